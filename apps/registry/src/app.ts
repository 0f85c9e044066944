import { headers } from '@mesh/protocol';
import { Hono, type MiddlewareHandler } from 'hono';
import { requestId } from 'hono/request-id';
import { mainPortAccess } from './access.ts';
import { adminOriginGuard } from './admin-origin.ts';
import type { AppDeps, AppEnv, Surface } from './app-env.ts';
import { adminToken } from './middleware/admin-token.ts';
import { admissionBound } from './middleware/admission.ts';
import { adminAudit } from './middleware/audit.ts';
import { requestBodyLimit } from './middleware/body-limit.ts';
import { errorHandler, notFound } from './middleware/error-handler.ts';
import { ginHeadRoutes } from './middleware/head-routes.ts';
import { metricsPage, requestMetrics } from './middleware/metrics.ts';
import { requestLog } from './middleware/request-log.ts';
import { incompatibleSchemaGuard } from './middleware/schema-guard.ts';
import { adminRoutes } from './routes/admin.ts';
import { agentRoutes } from './routes/agents.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { healthRoutes } from './routes/health.ts';
import { jobSignalRoutes } from './routes/job-signals.ts';
import { jobRoutes, reclaimRoutes } from './routes/jobs.ts';
import type { TokenSets } from './tokens.ts';

export type { AppDeps, AppEnv, Surface } from './app-env.ts';
export type { Identity, Readiness } from './identity.ts';

/**
 * Builds the registry's HTTP app. Pure: no listening socket, no timers, so
 * tests can drive it with `app.request()`.
 *
 * Middleware runs in the order it is registered, and the order is part of the
 * design: the body cap before admission (a body declared too large is refused
 * before it takes a slot), the audit trail before the admin-origin guard and
 * the token checks (refused attempts are recorded), the schema guard last.
 * `useOptional` registers a middleware whose factory returns one (its feature
 * configured) and nothing otherwise.
 */
export function createApp(deps: AppDeps, surface: Surface = 'all') {
  const app = new Hono<AppEnv>();
  const useOptional = (middleware: MiddlewareHandler<AppEnv> | undefined) => {
    if (middleware) app.use(middleware);
  };
  const tokens: TokenSets = { admin: [], agent: [], client: [], ...deps.tokens };

  app.use(requestId({ headerName: headers.requestId }));
  app.use(requestLog(deps)); // sets c.get('deps'); the debug request log
  app.use(ginHeadRoutes());
  app.use(requestBodyLimit(deps));
  useOptional(requestMetrics(deps));
  useOptional(admissionBound(deps));
  app.use(adminAudit(deps));
  // Admin routes answer only requests meant for this registry: no cross-site
  // writes, no foreign Host (DNS rebinding), token or not (admin-origin.ts);
  // after the audit trail, so refused attempts are recorded.
  if (surface !== 'main') app.use(adminOriginGuard(deps.adminHosts ?? []));
  useOptional(adminToken(tokens));
  // Agent and client tokens on the main port's routes (issue 16, item 5).
  if (surface !== 'admin') useOptional(mainPortAccess(tokens));
  useOptional(incompatibleSchemaGuard(deps));

  if (surface !== 'admin') {
    app.route('/', healthRoutes);
    app.route('/', agentRoutes);
    app.route('/', jobSignalRoutes);
    app.route('/', jobRoutes);
    const metrics = metricsPage(deps);
    if (metrics) app.get('/metrics', metrics);
  }
  if (surface !== 'main') {
    app.route('/', adminRoutes);
    app.route('/', reclaimRoutes);
    app.route('/', dashboardRoutes);
  }

  app.notFound(notFound);
  app.onError(errorHandler(deps));
  return app;
}

export type App = ReturnType<typeof createApp>;

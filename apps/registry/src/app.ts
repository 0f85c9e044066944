import type { Feature } from '@mesh/protocol';
import { headers } from '@mesh/protocol';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { requestId } from 'hono/request-id';
import { ApiError, errorBody, fromDatabaseError } from './errors.ts';
import type { Logger } from './logger.ts';
import { healthRoutes } from './routes/health.ts';
import { jobRoutes } from './routes/jobs.ts';
import type { JobSignals } from './services/job-signals.ts';
import type { JobStore } from './services/jobs.ts';

/** Paths that answer HEAD, as in MCP Mesh 3.7. */
const headRoutes = [/^\/health$/, /^\/heartbeat\/[^/]+$/];

/** Who this process is: reported by `/health` and recorded in the database. */
export interface Identity {
  replicaId: string;
  /** A new UUID at every start. */
  bootId: string;
  version: string;
  schemaVersion: number;
  uptimeSeconds(): number;
}

export interface Readiness {
  check(): Promise<{ database: 'ok' | 'unreachable'; migrations: 'done' | 'pending' }>;
}

/** Services injected into every route through `c.var.deps`. */
export interface AppDeps {
  identity: Identity;
  readiness: Readiness;
  features: readonly Feature[];
  logger: Logger;
  jobs: JobStore;
  signals: JobSignals;
  /** Largest accepted request body, in bytes. */
  maxBodyBytes?: number;
}

export interface AppEnv {
  Variables: { deps: AppDeps; requestId: string; log: Logger };
}

/**
 * Builds the registry's HTTP app. Pure: no listening socket, no timers, so
 * tests can drive it with `app.request()`.
 */
export function createApp(deps: AppDeps) {
  const app = new Hono<AppEnv>();
  app.use(requestId({ headerName: headers.requestId }));
  app.use(async (c, next) => {
    const started = performance.now();
    c.set('deps', deps);
    const log = deps.logger.child({ req_id: c.var.requestId });
    c.set('log', log);
    await next();
    log.debug(
      {
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: +(performance.now() - started).toFixed(2),
      },
      'request',
    );
  });
  // gin serves HEAD only where a HEAD route is declared; Hono would answer HEAD
  // on every GET route. Keep MCP Mesh's surface.
  app.use(async (c, next) => {
    if (c.req.method === 'HEAD' && !headRoutes.some((re) => re.test(c.req.path))) {
      return c.text('404 page not found', 404);
    }
    await next();
  });
  app.use(
    bodyLimit({
      maxSize: deps.maxBodyBytes ?? 1024 * 1024,
      onError: () => {
        throw new ApiError(
          'payload_too_large',
          `request body exceeds ${deps.maxBodyBytes ?? 1024 * 1024} bytes`,
        );
      },
    }),
  );
  app.route('/', healthRoutes);
  app.route('/', jobRoutes);

  // MCP Mesh (gin) answers unknown routes and wrong methods with this text.
  app.notFound((c) => c.text('404 page not found', 404));
  app.onError((err, c) => {
    if (err instanceof ApiError) return c.json(err.body(), err.status);
    if (err instanceof HTTPException && err.status < 500) {
      return c.json(errorBody('bad_request', err.message || 'bad request'), err.status);
    }
    const mapped = fromDatabaseError(err);
    if (mapped) {
      if (mapped.status >= 500) (c.var.log ?? deps.logger).warn({ err }, 'database unavailable');
      return c.json(mapped.body(), mapped.status);
    }
    (c.var.log ?? deps.logger).error({ err }, 'unhandled error');
    return c.json(errorBody('internal', 'internal error'), 500);
  });
  return app;
}

export type App = ReturnType<typeof createApp>;

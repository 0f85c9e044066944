/** Refuses work on a replica whose database schema moved on under it (services/schema-guard.ts). */
import type { MiddlewareHandler } from 'hono';
import type { AppDeps, AppEnv } from '../app-env.ts';
import { ApiError } from '../errors.ts';

/**
 * A breaking migration applied under this replica (services/schema-guard.ts):
 * it answers health, readiness and metrics, and refuses everything else.
 * None without a schema guard.
 */
export function incompatibleSchemaGuard(deps: AppDeps): MiddlewareHandler<AppEnv> | undefined {
  if (!deps.schemaGuard) return undefined;
  const guard = deps.schemaGuard;
  return async (c, next) => {
    const why = guard.incompatible;
    if (
      why &&
      !['/health', '/ready', '/metrics', '/'].includes(c.req.path) &&
      !c.req.path.startsWith('/admin/') &&
      !c.req.path.startsWith('/ui')
    ) {
      throw new ApiError('not_ready', `this replica is not ready: ${why}`);
    }
    await next();
  };
}

/**
 * The app's first middleware after the request id: puts the injected
 * services on every request (`c.get('deps')`) and, at debug level, logs each
 * request with its status and duration.
 */
import type { MiddlewareHandler } from 'hono';
import type { AppDeps, AppEnv } from '../app-env.ts';

/** Sets `deps` on the context; logs method, path, status and ms when the logger is at debug. */
export function requestLog(deps: AppDeps): MiddlewareHandler<AppEnv> {
  const debug = deps.logger.isLevelEnabled('debug');
  return async (c, next) => {
    c.set('deps', deps);
    if (!debug) return next();
    const started = performance.now();
    await next();
    deps.logger.debug(
      {
        req_id: c.var.requestId,
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: +(performance.now() - started).toFixed(2),
      },
      'request',
    );
  };
}

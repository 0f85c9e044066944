/** The admin audit trail: one info line per admin action, with who asked, what, and the result. */
import type { MiddlewareHandler } from 'hono';
import type { AppDeps, AppEnv } from '../app-env.ts';
import { ApiError } from '../errors.ts';

/**
 * The audit trail: every admin action (drain, resume, fleet drain, forget,
 * force reclaim) with who asked (remote address), what, and the result.
 * Registered before the token check, so refused attempts are recorded too.
 */
export function adminAudit(deps: AppDeps): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const p = c.req.path;
    const audited =
      (c.req.method !== 'GET' &&
        c.req.method !== 'HEAD' &&
        (p.startsWith('/admin/') || p.startsWith('/ui/api/'))) ||
      (c.req.method === 'POST' && /^\/jobs\/[^/]+\/reclaim$/.test(p));
    if (!audited) return next();
    let failure: unknown;
    try {
      await next();
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      const incoming = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)
        ?.incoming;
      const status = failure instanceof ApiError ? failure.status : failure ? 500 : c.res.status;
      deps.logger.info(
        {
          audit: true,
          req_id: c.var.requestId,
          remote: incoming?.socket?.remoteAddress ?? null,
          method: c.req.method,
          path: p,
          status,
          result: status < 400 ? 'ok' : 'refused',
        },
        `admin ${c.req.method} ${p}: ${status}`,
      );
    }
  };
}

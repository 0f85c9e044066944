/**
 * How the app answers an error and an unknown route: ApiError as its wire
 * body (Retry-After on 503), Hono's 4xx as bad_request, database failures
 * mapped (errors.ts `fromDatabaseError`), anything else a logged 500; and
 * gin's 404 text.
 */
import type { ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { bearerChallenge } from '../access.ts';
import type { AppDeps, AppEnv } from '../app-env.ts';
import { ApiError, errorBody, fromDatabaseError } from '../errors.ts';

/** MCP Mesh (gin) answers unknown routes and wrong methods with this text. */
export const notFound: NotFoundHandler<AppEnv> = (c) => c.text('404 page not found', 404);

/** The app's `onError`: every thrown error, rendered once. */
export function errorHandler(deps: AppDeps): ErrorHandler<AppEnv> {
  return (err, c) => {
    if (err instanceof ApiError) {
      if (err.status === 401) c.header('WWW-Authenticate', bearerChallenge);
      const retryAfter = err.retryAfterSeconds ?? (err.status === 503 ? 1 : undefined);
      return c.json(
        err.body(),
        err.status,
        retryAfter === undefined ? undefined : { 'Retry-After': String(retryAfter) },
      );
    }
    if (err instanceof HTTPException && err.status < 500) {
      return c.json(errorBody('bad_request', err.message || 'bad request'), err.status);
    }
    const where = { req_id: c.var.requestId, method: c.req.method, route: c.req.routePath || c.req.path };
    const mapped = fromDatabaseError(err);
    if (mapped) {
      if (mapped.status >= 500) {
        // One warn line when the database goes away and one when it is back
        // (services/status.ts), not a stack per request.
        if (deps.status) {
          deps.status.failed(err, 'request');
          deps.logger.debug({ ...where, reason: err.message }, 'database unavailable');
        } else deps.logger.warn({ err, ...where }, 'database unavailable');
      }
      return c.json(
        mapped.body(),
        mapped.status,
        mapped.retryAfterSeconds === undefined
          ? undefined
          : { 'Retry-After': String(mapped.retryAfterSeconds) },
      );
    }
    deps.logger.error({ err, ...where }, 'unhandled error');
    return c.json(errorBody('internal', 'internal error'), 500);
  };
}

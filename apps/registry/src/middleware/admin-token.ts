/** The optional admin token (tokens.ts) in front of the operator routes. */
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { ApiError } from '../errors.ts';
import { type TokenSets, tokenMatcher } from '../tokens.ts';

/**
 * Operator routes behind the optional admin token (reference §11 item 12):
 * admin, force reclaim, the job list (every job id and payload), and the
 * dashboard's API (its page and assets hold no data: they show the login form).
 * None when no admin token is configured.
 */
export function adminToken(tokens: TokenSets): MiddlewareHandler<AppEnv> | undefined {
  if (tokens.admin.length === 0) return undefined;
  const isAdmin = tokenMatcher(tokens.admin);
  return async (c, next) => {
    const p = c.req.path;
    const guarded =
      p.startsWith('/admin/') ||
      p.startsWith('/ui/api/') ||
      (c.req.method === 'POST' && /^\/jobs\/[^/]+\/reclaim$/.test(p)) ||
      (c.req.method === 'GET' && p === '/jobs');
    if (guarded && !isAdmin(c.req.header('authorization'))) {
      throw new ApiError('unauthorized', 'missing or wrong admin token (Authorization: Bearer <token>)');
    }
    await next();
  };
}

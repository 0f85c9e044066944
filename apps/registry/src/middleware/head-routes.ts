/** HEAD answered only where MCP Mesh 3.7 (gin) declares a HEAD route. */
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../app-env.ts';

/** Paths that answer HEAD, as in MCP Mesh 3.7. */
const headRoutes = [/^\/health$/, /^\/heartbeat\/[^/]+$/];

/**
 * gin serves HEAD only where a HEAD route is declared; Hono would answer HEAD
 * on every GET route. Keep MCP Mesh's surface.
 */
export function ginHeadRoutes(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (c.req.method === 'HEAD' && !headRoutes.some((re) => re.test(c.req.path))) {
      return c.text('404 page not found', 404);
    }
    await next();
  };
}

import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from './app-env.ts';
import { ApiError } from './errors.ts';
import { type Role, type TokenSets, tokenMatcher } from './tokens.ts';

/**
 * Which main-port routes each role's token opens (issue 16, item 5). A route
 * listed for both roles accepts either token; admin tokens open every route.
 * Not listed, so never behind a token: `/health` and `/ready` (probes that
 * send no credentials; they tell liveness and database reachability, no data),
 * `/` and `/metrics` (scrapers; counts per route, no ids or payloads).
 */
export const mainPortRoutes: { method: string; path: RegExp; roles: Role[] }[] = [
  { method: 'POST', path: /^\/heartbeat$/, roles: ['agent'] },
  { method: 'HEAD', path: /^\/heartbeat\/[^/]+$/, roles: ['agent'] },
  { method: 'DELETE', path: /^\/agents\/[^/]+$/, roles: ['agent'] },
  { method: 'POST', path: /^\/jobs\/(claim|batch|leases|signals)$/, roles: ['agent'] },
  { method: 'POST', path: /^\/jobs\/[^/]+\/release$/, roles: ['agent'] },
  { method: 'POST', path: /^\/jobs$/, roles: ['client'] },
  { method: 'GET', path: /^\/jobs$/, roles: ['client'] },
  { method: 'POST', path: /^\/jobs\/[^/]+\/cancel$/, roles: ['client'] },
  { method: 'GET', path: /^\/jobs\/[^/]+$/, roles: ['agent', 'client'] },
  { method: 'GET', path: /^\/jobs\/[^/]+\/events$/, roles: ['agent', 'client'] },
  { method: 'POST', path: /^\/jobs\/[^/]+\/events$/, roles: ['agent', 'client'] },
  { method: 'GET', path: /^\/agents$/, roles: ['agent', 'client'] },
];

export const bearerChallenge = 'Bearer realm="mesh-registry"';

/**
 * Refuses a main-port request without a token of a role allowed on its route,
 * when that route is closed: a route is open while any role allowed on it has
 * no token configured, so that with no tokens at all MCP Mesh 3.7 clients work
 * as before, and configuring agent tokens alone leaves clients as they were.
 */
export function mainPortAccess(tokens: TokenSets): MiddlewareHandler<AppEnv> | undefined {
  if (tokens.agent.length === 0 && tokens.client.length === 0) return undefined;
  const matchers = new Map<string, (header: string | undefined) => boolean>();
  for (const roles of [['agent'], ['client'], ['agent', 'client']] as Role[][]) {
    if (roles.some((r) => tokens[r].length === 0)) continue;
    matchers.set(roles.join(','), tokenMatcher([...roles.flatMap((r) => tokens[r]), ...tokens.admin]));
  }
  return async (c, next) => {
    const method = c.req.method;
    const path = c.req.path;
    const route = mainPortRoutes.find((r) => r.method === method && r.path.test(path));
    const matches = route && matchers.get(route.roles.join(','));
    if (matches && !matches(c.req.header('authorization'))) {
      throw new ApiError(
        'unauthorized',
        `missing or wrong ${route.roles.join(' or ')} token (Authorization: Bearer <token>)`,
      );
    }
    await next();
  };
}

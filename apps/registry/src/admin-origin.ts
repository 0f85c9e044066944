import { isIP } from 'node:net';
import type { MiddlewareHandler } from 'hono';
import { ApiError } from './errors.ts';

/**
 * The admin routes (`/admin/*`, the dashboard `/ui`, force reclaim) answer
 * only requests meant for this registry (issue 30 finding 6), token or not:
 *
 * - **No cross-site writes.** A browser page of another origin could drain
 *   the replica or the fleet with a no-cors `fetch` or a `text/plain` form
 *   (no preflight). A state-changing request whose `Sec-Fetch-Site` is not
 *   `same-origin`/`none`, or whose `Origin` is not the request's own host, is
 *   refused (403). meshctl, curl and the probes send neither header.
 * - **No foreign Host.** A DNS-rebinding page (a name of the attacker's that
 *   now resolves to 127.0.0.1) could read `/ui/api/*`; its requests carry the
 *   attacker's name in `Host`. Accepted: an IP address, `localhost` (and
 *   `*.localhost`), this machine's name, the advertise host, and the names of
 *   `--admin-hosts` (a leading dot allows subdomains: `.svc.cluster.local`).
 */
export function adminOriginGuard(names: readonly (string | undefined)[]): MiddlewareHandler {
  const exact = new Set<string>();
  const suffixes: string[] = [];
  for (const name of names) {
    const n = name?.trim().toLowerCase().replace(/\.$/, '');
    if (!n) continue;
    if (n.startsWith('.')) suffixes.push(n);
    else exact.add(n);
  }
  const allowedHost = (host: string): boolean => {
    const name = hostName(host);
    if (name === undefined) return false;
    if (isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost')) return true;
    return exact.has(name) || suffixes.some((s) => name.endsWith(s));
  };
  return async (c, next) => {
    if (!isAdminPath(c.req.method, c.req.path)) return next();
    // No Host at all is no browser (every browser sends one; Node's parser
    // requires it of HTTP/1.1): a rebinding page always names its own host.
    const host = c.req.header('host') ?? '';
    if (host !== '' && !allowedHost(host)) {
      throw new ApiError(
        'forbidden',
        `admin routes refuse Host ${JSON.stringify(host.slice(0, 100))}: use an IP address, localhost, or a name given to --admin-hosts`,
      );
    }
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && c.req.method !== 'OPTIONS') {
      const site = c.req.header('sec-fetch-site');
      const origin = c.req.header('origin');
      if (site !== undefined && site !== 'same-origin' && site !== 'none') {
        throw new ApiError('forbidden', `admin routes refuse cross-site requests (Sec-Fetch-Site: ${site})`);
      }
      if (origin !== undefined && originHost(origin) !== host.toLowerCase()) {
        throw new ApiError('forbidden', 'admin routes refuse requests from another origin');
      }
    }
    await next();
  };
}

/** The paths served only with the admin surface. */
function isAdminPath(method: string, path: string): boolean {
  return (
    path.startsWith('/admin/') ||
    path === '/ui' ||
    path.startsWith('/ui/') ||
    (method === 'POST' && /^\/jobs\/[^/]+\/reclaim$/.test(path))
  );
}

/** `Host` without its port, lower-cased; an IPv6 literal without brackets. */
function hostName(host: string): string | undefined {
  const h = host.trim().toLowerCase();
  if (!h) return undefined;
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(1, end) : undefined;
  }
  const colon = h.lastIndexOf(':');
  return (colon >= 0 ? h.slice(0, colon) : h).replace(/\.$/, '');
}

/** `host[:port]` of an Origin, as a Host header would spell it; '' for `null` or garbage. */
function originHost(origin: string): string {
  try {
    return new URL(origin).host.toLowerCase();
  } catch {
    return '';
  }
}

import type { DashboardDrainAnswer, ReplicaInfo } from '@mesh/protocol';
import { cancelRequest } from '@mesh/protocol';
import { type Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { AppEnv } from '../app-env.ts';
import { ApiError } from '../errors.ts';
import { isUuid, jobNotFound } from '../services/jobs.ts';
import { within } from '../services/status.ts';
import { uiAssets } from '../ui-assets.ts';
import { readJson } from './input.ts';
import { forwardCancel, listJobs } from './jobs.ts';

/**
 * The page allows nothing but its own script, stylesheet and requests: no
 * inline script or style, no framing, no form posts, no other origin.
 */
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const securityHeaders = {
  'Content-Security-Policy': contentSecurityPolicy,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mesh-registry · dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/app.css">
</head>
<body>
<div id="app"><noscript>The dashboard needs JavaScript.</noscript></div>
<script type="module" src="/ui/app.js"></script>
</body>
</html>
`;

/** How long a proxied drain call to another replica may take (a fleet drain waits for acknowledgements). */
const proxyTimeoutMs = 20_000;

type Ctx = Context<AppEnv>;

/**
 * The operator dashboard (docs/dashboard.md): the page and its assets, which
 * hold no data, and `/ui/api/*`, behind the admin token when one is set
 * (middleware/admin-token.ts). Mounted where the admin routes are.
 */
export const dashboardRoutes = new Hono<AppEnv>()
  .get('/ui', (c) => c.html(page, 200, securityHeaders))
  .get('/ui/', (c) => c.redirect('/ui', 301))
  .get('/ui/app.js', async (c) =>
    c.body((await uiAssets()).js, 200, {
      ...securityHeaders,
      'Content-Type': 'text/javascript; charset=utf-8',
      'Cache-Control': 'no-cache',
    }),
  )
  .get('/ui/app.css', async (c) =>
    c.body((await uiAssets()).css, 200, {
      ...securityHeaders,
      'Content-Type': 'text/css; charset=utf-8',
      'Cache-Control': 'no-cache',
    }),
  )
  // The login form checks a token here (401 from middleware/admin-token.ts when wrong).
  .get('/ui/api/session', (c) => {
    const { identity, tokens } = c.get('deps');
    return c.json({ replica_id: identity.replicaId, token_required: (tokens?.admin?.length ?? 0) > 0 });
  })
  // One stream per browser; every subscriber gets the same serialized snapshot.
  .get('/ui/api/stream', (c) => {
    const { dashboard } = c.get('deps');
    if (!dashboard) throw new ApiError('unavailable', 'the dashboard feed is not running');
    c.header('Cache-Control', 'no-store');
    c.header('X-Accel-Buffering', 'no');
    return streamSSE(c, async (stream) => {
      let wake: (() => void) | undefined;
      const queue: (string | null)[] = [];
      const unsubscribe = dashboard.subscribe((json) => {
        // Only the newest snapshot matters: a slow reader skips the ones it missed.
        queue.length = 0;
        queue.push(json);
        wake?.();
      });
      stream.onAbort(() => {
        queue.push(null);
        wake?.();
      });
      try {
        for (;;) {
          if (queue.length === 0) await new Promise<void>((r) => (wake = r));
          wake = undefined;
          const next = queue.shift();
          if (next === undefined) continue;
          if (next === null || stream.aborted || stream.closed) break;
          await stream.writeSSE({ event: 'snapshot', data: next });
        }
      } finally {
        unsubscribe();
      }
    });
  })
  .get('/ui/api/jobs', listJobs)
  .get('/ui/api/jobs/:id', async (c) => {
    const id = c.req.param('id');
    if (!isUuid(id)) throw jobNotFound(id);
    const { jobs } = c.get('deps');
    const job = await jobs.get(id);
    const events = await jobs.readEvents(id, 0, [], 500);
    return c.json({ job, events });
  })
  .post('/ui/api/jobs/:id/cancel', async (c) => {
    const id = c.req.param('id');
    const body = await readJson(c, cancelRequest, { optional: true });
    const reason = body.reason?.trim() || 'cancelled from the dashboard';
    const { previousOwner } = await c.get('deps').jobs.cancel(id, reason);
    if (previousOwner) void forwardCancel(c.get('deps'), previousOwner, id, reason, undefined);
    return c.json({ status: 'cancelled', forwarded_to_instance_id: previousOwner });
  })
  .post('/ui/api/jobs/:id/reclaim', async (c) => c.json(await c.get('deps').jobs.reclaim(c.req.param('id'))))
  // A replica's drain, through its own admin routes (as meshctl does): GET
  // for the progress view, POST to drain, DELETE to resume.
  .on(['GET', 'POST', 'DELETE'], '/ui/api/replicas/:id/drain', async (c) =>
    c.json(await proxy(c, c.req.param('id'), '/admin/drain')),
  )
  .on(['GET', 'POST', 'DELETE'], '/ui/api/fleet/drain', async (c) =>
    c.json(await proxy(c, c.get('deps').identity.replicaId, '/admin/fleet/drain')),
  );

/** Where a replica's admin routes are: its admin listener if it has one. */
const replicaBase = (r: ReplicaInfo): string | null => r.admin_url ?? r.main_url;

/**
 * Sends the browser's request on to a replica's admin route with the
 * operator's own token, and hands back its status and body.
 */
async function proxy(c: Ctx, replicaId: string, path: string): Promise<DashboardDrainAnswer> {
  const { replicas } = c.get('deps');
  if (!replicas) throw new ApiError('unavailable', 'replica registry not running');
  const list = await within(replicas.list(), 5_000);
  const target = list.find((r) => r.replica_id === replicaId);
  if (!target) throw new ApiError('not_found', `replica not found: ${replicaId}`);
  const base = replicaBase(target);
  if (!base) throw new ApiError('unavailable', `replica ${replicaId} recorded no URL`);
  const auth = c.req.header('authorization');
  try {
    const res = await fetch(`${base}${path}`, {
      method: c.req.method,
      headers: auth ? { authorization: auth } : {},
      signal: AbortSignal.timeout(proxyTimeoutMs),
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {}
    return { status: res.status, body };
  } catch (err) {
    return { status: 0, body: `replica ${replicaId} at ${base} did not answer: ${(err as Error).message}` };
  }
}

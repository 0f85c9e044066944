import type { Duplex } from 'node:stream';
import { headers } from '@mesh/protocol';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { requestId } from 'hono/request-id';
import { bearerChallenge, mainPortAccess } from './access.ts';
import { adminOriginGuard } from './admin-origin.ts';
import type { AppDeps, AppEnv, Surface } from './app-env.ts';
import { drainThenClose } from './client-error.ts';
import { ApiError, errorBody, fromDatabaseError } from './errors.ts';
import { adminRoutes } from './routes/admin.ts';
import { agentRoutes } from './routes/agents.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { healthRoutes } from './routes/health.ts';
import { jobSignalRoutes } from './routes/job-signals.ts';
import { jobRoutes, reclaimRoutes } from './routes/jobs.ts';
import { classify } from './services/admission.ts';
import { DatabaseTimeout, within } from './services/status.ts';
import { type TokenSets, tokenMatcher } from './tokens.ts';

export type { AppDeps, AppEnv, Surface } from './app-env.ts';
export type { Identity, Readiness } from './identity.ts';

/** Paths that answer HEAD, as in MCP Mesh 3.7. */
const headRoutes = [/^\/health$/, /^\/heartbeat\/[^/]+$/];

/** A long-poll's declared wait, in ms: `?wait=` seconds, or the signals long-poll's longest (60 s). */
const longPollMs = (path: string, wait: string | undefined): number =>
  path === '/jobs/signals' ? 60_000 : Math.min(60, Math.max(0, Number(wait) || 0)) * 1000;

/**
 * Reads and drops a refused body (up to `budget` bytes, while it keeps
 * coming: client-error.ts `drainThenClose`) before the 413 goes out. Answering and closing while the client is still
 * sending makes the kernel reset the connection, and the client never reads
 * the answer (a 4 MB body saw ECONNRESET, not 413: found by issue 16's fuzzer).
 */
async function discardBody(env: unknown, declared: number, budget: number): Promise<void> {
  const incoming = (env as { incoming?: NodeJS.ReadableStream & { complete?: boolean } } | undefined)
    ?.incoming;
  if (!incoming || incoming.complete || declared > budget) return;
  const socket = (incoming as { socket?: Duplex }).socket;
  if (!socket) return;
  await new Promise<void>((done) => drainThenClose(incoming, socket, done));
}

/**
 * A request answered 503 by the database bound while its body had not
 * arrived: ends the body read (the handler's read rejects, the handler ends
 * and its admission slot is released) once the answer is out or the client
 * has gone. Node detaches a request from its connection when its answer is
 * sent, so a body read still waiting then is never told that the client left:
 * it never settled, and its slot leaked for good (issue 30 finding 1: 64 such
 * requests per route class answered every later claim, submit and heartbeat
 * 503 until restart). Closing the connection of a body that never came is the
 * bound applied to the body.
 */
function endUnfinishedBody(env: unknown): void {
  const { incoming, outgoing } = (env ?? {}) as {
    incoming?: NodeJS.ReadableStream & { complete?: boolean; destroy(): void; destroyed?: boolean };
    outgoing?: NodeJS.WritableStream & { writableFinished?: boolean; destroyed?: boolean };
  };
  if (!incoming || incoming.complete || incoming.destroyed) return;
  const end = () => {
    if (!incoming.complete) incoming.destroy();
  };
  if (!outgoing || outgoing.writableFinished || outgoing.destroyed) {
    setImmediate(end);
    return;
  }
  outgoing.once('finish', end);
  outgoing.once('close', end);
}

/**
 * Builds the registry's HTTP app. Pure: no listening socket, no timers, so
 * tests can drive it with `app.request()`.
 */
export function createApp(deps: AppDeps, surface: Surface = 'all') {
  const app = new Hono<AppEnv>();
  app.use(requestId({ headerName: headers.requestId }));
  const debug = deps.logger.isLevelEnabled('debug');
  app.use(async (c, next) => {
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
  });
  // gin serves HEAD only where a HEAD route is declared; Hono would answer HEAD
  // on every GET route. Keep MCP Mesh's surface.
  app.use(async (c, next) => {
    if (c.req.method === 'HEAD' && !headRoutes.some((re) => re.test(c.req.path))) {
      return c.text('404 page not found', 404);
    }
    await next();
  });
  // Body size cap. A declared Content-Length is checked without touching the
  // body, which keeps @hono/node-server's fast body read (hono's bodyLimit would
  // build a web stream for every request); chunked bodies go through bodyLimit.
  const maxBodyBytes = deps.maxBodyBytes ?? 1024 * 1024;
  const tooLarge = () => {
    throw new ApiError('payload_too_large', `request body exceeds ${maxBodyBytes} bytes`);
  };
  const chunkedLimit = bodyLimit({ maxSize: maxBodyBytes, onError: tooLarge });
  app.use(async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    const declared = c.req.header('content-length');
    if (declared !== undefined && !c.req.header('transfer-encoding')) {
      if (Number(declared) > maxBodyBytes) {
        await discardBody(c.env, Number(declared), maxBodyBytes * 4);
        tooLarge();
      }
      return next();
    }
    return chunkedLimit(c, next);
  });
  if (deps.metrics) {
    const { requests, latency } = deps.metrics;
    app.use(async (c, next) => {
      const started = performance.now();
      await next();
      const route = c.req.routePath || 'unmatched';
      requests.inc({ route, method: c.req.method, status: String(c.res.status) });
      latency.observe({ route, method: c.req.method }, (performance.now() - started) / 1000);
    });
  }
  // Admission and the database bound (issue 16): a main-port request of a
  // class at capacity waits in a bounded queue or is shed (503 overloaded,
  // Retry-After); one admitted waits on the database for at most
  // dbRequestTimeoutMs (plus its long-poll wait), then answers 503. Its
  // handler may still be waiting (postgres.js has no query timeout): it keeps
  // its slot until it ends, so work hung on an unreachable database stays
  // bounded, and its late outcome is dropped. Writes are fenced and
  // idempotent-keyed, so a late commit is never applied twice.
  if (deps.admission || deps.dbRequestTimeoutMs) {
    const { admission, dbRequestTimeoutMs: bound = 0 } = deps;
    app.use(async (c, next) => {
      const cls = classify(c.req.method, c.req.path, (n) => c.req.query(n));
      if (!cls) return next();
      let release = admission ? await admission.enter(cls) : () => {};
      let extraMs = 0;
      // A long-poll claim (wait_ms, in the body: unknown at classification)
      // moves from the claim lane to the long-poll lane before it parks, so
      // idle workers never hold the claim slots, and its wait extends the bound.
      c.set('slot', {
        toLongPoll(waitMs: number) {
          if (cls === 'wait') return;
          if (admission) {
            const held = admission.enter('wait') as () => void; // never queued: a slot or overloaded
            release();
            release = held;
          }
          extraMs += waitMs;
        },
      });
      const work = next().finally(() => release());
      if (bound <= 0) return work;
      const started = performance.now();
      const base = bound + (cls === 'wait' ? longPollMs(c.req.path, c.req.query('wait')) : 0);
      for (;;) {
        const left = base + extraMs - (performance.now() - started);
        try {
          await within(work, Math.max(1, left));
          return;
        } catch (err) {
          if (!(err instanceof DatabaseTimeout)) throw err;
          if (base + extraMs - (performance.now() - started) > 0) continue; // the bound grew meanwhile
          endUnfinishedBody(c.env);
          c.set('answered', 'timed_out');
          deps.status?.failed(err, 'request');
          deps.metrics?.databaseTimeouts.inc();
          throw new ApiError(
            'unavailable',
            `database unavailable (no answer within ${base + extraMs} ms)`,
            2,
          );
        }
      }
    });
  }
  // The audit trail: every admin action (drain, resume, fleet drain, forget,
  // force reclaim) with who asked (remote address), what, and the result.
  // Registered before the token check, so refused attempts are recorded too.
  app.use(async (c, next) => {
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
  });
  // Admin routes answer only requests meant for this registry: no cross-site
  // writes, no foreign Host (DNS rebinding), token or not (admin-origin.ts);
  // after the audit trail, so refused attempts are recorded.
  if (surface !== 'main') app.use(adminOriginGuard(deps.adminHosts ?? []));
  // Operator routes behind the optional admin token (reference §11 item 12):
  // admin, force reclaim, the job list (every job id and payload), and the
  // dashboard's API (its page and assets hold no data: they show the login form).
  const tokens: TokenSets = { admin: [], agent: [], client: [], ...deps.tokens };
  if (tokens.admin.length > 0) {
    const isAdmin = tokenMatcher(tokens.admin);
    app.use(async (c, next) => {
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
    });
  }
  // Agent and client tokens on the main port's routes (issue 16, item 5).
  const access = surface === 'admin' ? undefined : mainPortAccess(tokens);
  if (access) app.use(access);
  // A breaking migration applied under this replica (services/schema-guard.ts):
  // it answers health, readiness and metrics, and refuses everything else.
  if (deps.schemaGuard) {
    const guard = deps.schemaGuard;
    app.use(async (c, next) => {
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
    });
  }
  if (surface !== 'admin') {
    app.route('/', healthRoutes);
    app.route('/', agentRoutes);
    app.route('/', jobSignalRoutes);
    app.route('/', jobRoutes);
    if (deps.metrics) {
      const { registry } = deps.metrics;
      app.get('/metrics', async (c) =>
        c.text(await registry.metrics(), 200, { 'Content-Type': registry.contentType }),
      );
    }
  }
  if (surface !== 'main') {
    app.route('/', adminRoutes);
    app.route('/', reclaimRoutes);
    app.route('/', dashboardRoutes);
  }

  // MCP Mesh (gin) answers unknown routes and wrong methods with this text.
  app.notFound((c) => c.text('404 page not found', 404));
  app.onError((err, c) => {
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
  });
  return app;
}

export type App = ReturnType<typeof createApp>;

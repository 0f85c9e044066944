/**
 * Admission and the database bound (issue 16) on the main port's route
 * classes (services/admission.ts `classify`): a bounded slot per class, and a
 * 503 when the database has not answered in time.
 */
import type { MiddlewareHandler } from 'hono';
import type { AppDeps, AppEnv } from '../app-env.ts';
import { ApiError } from '../errors.ts';
import { classify } from '../services/admission.ts';
import { DatabaseTimeout, within } from '../services/status.ts';

/** A long-poll's declared wait, in ms: `?wait=` seconds, or the signals long-poll's longest (60 s). */
const longPollMs = (path: string, wait: string | undefined): number =>
  path === '/jobs/signals' ? 60_000 : Math.min(60, Math.max(0, Number(wait) || 0)) * 1000;

/** The database bound while the database is known to be down (see admissionBound). */
export const outageBoundMs = 1_000;

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
 * Admission and the database bound (issue 16): a main-port request of a
 * class at capacity waits in a bounded queue or is shed (503 overloaded,
 * Retry-After); one admitted waits on the database for at most
 * dbRequestTimeoutMs (plus its long-poll wait), then answers 503. Its
 * handler may still be waiting (postgres.js has no query timeout): it keeps
 * its slot until it ends, so work hung on an unreachable database stays
 * bounded, and its late outcome is dropped. Writes are fenced and
 * idempotent-keyed, so a late commit is never applied twice.
 *
 * None when neither admission nor the bound is configured.
 */
export function admissionBound(deps: AppDeps): MiddlewareHandler<AppEnv> | undefined {
  if (!(deps.admission || deps.dbRequestTimeoutMs)) return undefined;
  const { admission, dbRequestTimeoutMs: configured = 0 } = deps;
  return async (c, next) => {
    // While this replica knows its database is down (services/status.ts), a
    // request waits `outageBoundMs` at most, not the whole bound: a client
    // learns in a second what it would have after 10 s (issue 29: a
    // submission during a cut answered after 10.0 s). Not a refusal: a
    // request the database answers within it succeeds, so a false "down" or
    // a database just back costs nothing.
    const bound = deps.status?.databaseUp === false ? Math.min(configured, outageBoundMs) : configured;
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
        throw new ApiError('unavailable', `database unavailable (no answer within ${base + extraMs} ms)`, 2);
      }
    }
  };
}

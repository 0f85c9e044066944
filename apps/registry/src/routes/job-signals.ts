import { type JobSignalsResponse, jobSignalsRequest, limits } from '@mesh/protocol';
import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { ApiError } from '../errors.ts';
import { identifier, readJson, required } from './input.ts';

/**
 * `POST /jobs/signals` (ours, feature `job-signals`): an agent instance's one
 * long-poll for what happens to the claims it holds. It answers as soon as one
 * of them is cancelled, re-claimed or ended, on whichever replica that
 * happened (the statement's pg_notify wakes every replica's LISTEN), so a
 * busy handler's signal fires within milliseconds rather than at its next
 * lease renewal. It renews nothing: leases keep their own path.
 */
export const jobSignalRoutes = new Hono<AppEnv>().post('/jobs/signals', async (c) => {
  const body = await readJson(c, jobSignalsRequest, {
    maxItems: { jobs: [limits.maxLeaseRenewals, 'jobs per call'] },
  });
  const instanceId = identifier(required(body.instance_id, 'instance_id'), 'instance_id');
  const held = body.jobs ?? [];
  const claims = held.map((j) => {
    const id = j.id?.trim();
    if (!id) throw new ApiError('bad_request', 'every job requires a non-empty id');
    if (j.claim_epoch === undefined || j.claim_epoch === null) {
      throw new ApiError('bad_request', `job ${id} requires claim_epoch`);
    }
    return { id, epoch: j.claim_epoch };
  });
  const wait = Math.min(60, Math.max(0, body.wait ?? 0));
  const { jobs, signals } = c.get('deps');
  const ids = claims.map((x) => x.id);
  const deadline = Date.now() + wait * 1000;
  const aborted = c.req.raw.signal;
  for (;;) {
    // Listen before reading, so a change committed between the read and the
    // wait still wakes us; the 2 s cap bounds what a lost notification costs.
    const stopWaiting = new AbortController();
    const woken =
      claims.length === 0
        ? undefined
        : signals.wait(
            ids,
            Math.min(Math.max(0, deadline - Date.now()), 2_000),
            AbortSignal.any([aborted, stopWaiting.signal]),
          );
    const found = await jobs.claimSignals(instanceId, claims);
    if (found.length > 0 || Date.now() >= deadline || aborted.aborted || signals.closing || !woken) {
      stopWaiting.abort();
      return c.json({ signals: found } satisfies JobSignalsResponse);
    }
    if ((await woken) === 'abort') return c.json({ signals: [] } satisfies JobSignalsResponse);
  }
});

import type { Agent, JobAbortedError, JobWorkerOptions, RegistryClient, WorkerNotice } from '@mesh/sdk';
import { expect } from 'vitest';
import { until } from '../support/until.ts';
import { startWireTap } from '../support/wire-tap.ts';
import {
  type Cell,
  deferred,
  deltasFor,
  fencing,
  isEmptyDelta,
  leaseRenewalsFor,
  observe,
  type Scenario,
  type ScenarioKey,
  settledFields,
  sleep,
} from './cell.ts';
import { type LoadedClient, type SdkModule, shortLeaseSeconds } from './kinds.ts';

/**
 * The matrix's scenarios for an SDK client (0.1.0 as released, or the
 * workspace's 0.2.0): an Agent with one JobWorker runs the job, a client of
 * the same SDK submits and reads it back, all through the cell's tap; the
 * tap's record says which wire path the SDK took.
 */

const sdkOf = (cell: Cell): SdkModule => {
  if (cell.loaded.kind !== 'sdk') throw new Error(`${cell.client.key} is not an SDK`);
  return cell.loaded.sdk;
};

interface Running {
  sdk: SdkModule;
  /** A consumer: the same SDK, no instance id. */
  client: RegistryClient;
  agent: Agent;
  notices: WorkerNotice[];
}

/** Starts an agent with one worker (of the cell's SDK) on `url`, runs `body`, stops the agent. */
async function withWorker<T>(
  cell: Cell,
  name: string,
  worker: Omit<JobWorkerOptions, 'client' | 'instanceId'>,
  body: (r: Running) => Promise<T>,
  { url = cell.tap.url, expectsRefusals = false }: { url?: string; expectsRefusals?: boolean } = {},
): Promise<T> {
  const sdk = sdkOf(cell);
  const client = new sdk.RegistryClient({ urls: [url] });
  const agent = new sdk.Agent({ client, name: `${cell.prefix}-${name}`, heartbeatIntervalMs: 1_000 });
  const notices: WorkerNotice[] = [];
  agent.worker({ maxIdleMs: 200, ...worker, onNotice: (n) => notices.push(n) });
  await agent.start();
  try {
    const result = await body({ sdk, client, agent, notices });
    if (!expectsRefusals) {
      const key = (n: { jobId: string; claimEpoch: number | null }) => `${n.jobId}@${n.claimEpoch}`;
      await until('the worker to settle every job it claimed', () => {
        const settled = new Set(notices.filter((n) => n.type === 'settled').map(key));
        return notices.filter((n) => n.type === 'claimed').every((n) => settled.has(key(n)));
      });
      const loaded = cell.loaded as Extract<LoadedClient, { kind: 'sdk' }>;
      expect(unexpectedNotices(notices, loaded.version === '0.1.0')).toEqual([]);
    }
    return result;
  } finally {
    await agent.stop(2_000);
  }
}

/**
 * Refusals and aborts of an execution that did not end by its own committed
 * outcome. For SDK 0.1.0 an abort of one that did is left out: it reads the
 * job at claim time (for its total_deadline), and when the handler completes
 * before that read answers, it aborts the finished execution with
 * `already_terminal (completed)`: a spurious notice, harmless to the job.
 * 0.2.0 never aborts a settled attempt, so it gets no such allowance.
 */
function unexpectedNotices(notices: WorkerNotice[], spuriousAbortKnown: boolean): WorkerNotice[] {
  const committed = new Set(
    notices.flatMap((n) => (n.type === 'settled' && n.committed ? [`${n.jobId}@${n.claimEpoch}`] : [])),
  );
  return notices.filter(
    (n) =>
      n.type === 'refused' ||
      (n.type === 'aborted' &&
        !(
          spuriousAbortKnown &&
          n.reason === 'already_terminal' &&
          committed.has(`${n.jobId}@${n.claimEpoch}`)
        )),
  );
}

const settledNotice = (notices: WorkerNotice[], id: string) =>
  notices.find(
    (n): n is Extract<WorkerNotice, { type: 'settled' }> => n.type === 'settled' && n.jobId === id,
  );

const completion: Scenario = (cell) => {
  const capability = `${cell.prefix}-completion`;
  return withWorker(
    cell,
    'completion',
    { capability, handler: async ({ payload }) => ({ echoed: payload.n }) },
    async ({ sdk, client }) => {
      const { id } = await client.submit({ capability, submitted_by: 'skew', submitted_payload: { n: 7 } });
      const job = await sdk.waitForJob(client, id, { timeoutMs: 20_000 });
      expect(job).toMatchObject({ status: 'completed', result: { echoed: 7 }, attempt_count: 1 });
      const done = deltasFor(cell.tap, id).find((d) => d.delta.status === 'completed');
      const rode = done?.call.body?.claim !== undefined;
      // With claim-beside-deltas the worker's next claim rode in the same
      // request, and its answer says what it claimed (nothing: one job here).
      expect(done?.call.response).toEqual(
        rode ? { accepted: 1, rejected: [], claimed: [] } : { accepted: 1, rejected: [] },
      );
      return `completed by a delta ${fencing(done?.delta)}${rode ? ', its next claim beside it' : ''}`;
    },
  );
};

const progress: Scenario = (cell) => {
  const capability = `${cell.prefix}-progress`;
  const seen = deferred();
  return withWorker(
    cell,
    'progress',
    {
      capability,
      handler: async (ctx) => {
        expect(await ctx.progress(0.5, 'halfway')).toBe(true);
        await seen.promise;
        return { done: true };
      },
    },
    async ({ sdk, client }) => {
      const { id } = await client.submit({ capability, submitted_by: 'skew', submitted_payload: {} });
      await until('the progress to be visible to the consumer', async () => {
        const j = await client.getJob(id);
        return j.status === 'working' && j.progress === 0.5 && j.progress_message === 'halfway';
      });
      seen.resolve();
      expect(await sdk.waitForJob(client, id, { timeoutMs: 20_000 })).toMatchObject({
        status: 'completed',
        progress: 1,
      });
      const update = deltasFor(cell.tap, id).find((d) => d.delta.progress === 0.5);
      return `progress 0.5 "halfway" read back while working; delta ${fencing(update?.delta)}`;
    },
  );
};

const retry: Scenario = (cell) => {
  const capability = `${cell.prefix}-retry`;
  const sdk = sdkOf(cell);
  return withWorker(
    cell,
    'retry',
    {
      capability,
      handler: async ({ attempt, claimEpoch }) => {
        if (attempt === 1) throw new sdk.RetryableError('upstream down');
        return { attempt, epoch: claimEpoch };
      },
    },
    async ({ client }) => {
      const { id } = await client.submit({
        capability,
        submitted_by: 'skew',
        submitted_payload: {},
        max_retries: 1,
      });
      const job = await sdk.waitForJob(client, id, { timeoutMs: 20_000 });
      expect(job).toMatchObject({ status: 'completed', result: { attempt: 2 }, attempt_count: 2 });
      const release = cell.tap.calls.find((c) => c.method === 'POST' && c.path === `/jobs/${id}/release`);
      expect(release).toMatchObject({ status: 200, response: { status: 'working', attempt_count: 1 } });
      const how =
        release?.body?.claim_epoch === undefined
          ? 'released owner-only (no claim_epoch on the 3.7 release)'
          : `released fenced (claim_epoch ${release.body.claim_epoch})`;
      return `${how}; attempt 2 completed (claim_epoch ${job.claim_epoch})`;
    },
  );
};

/** How the SDK learnt that its job ended or moved: the first refusal, and the route that carried it. */
function learnt(tap: Cell['tap'], notices: WorkerNotice[], id: string, since: number): string {
  const refusal = notices.find(
    (n): n is Extract<WorkerNotice, { type: 'refused' }> => n.type === 'refused' && n.jobId === id,
  );
  if (!refusal) return 'no refusal seen';
  if (refusal.write === 'signal') return `signals long-poll (/jobs/signals) answered: ${refusal.reason}`;
  if (refusal.write !== 'renew') return `its ${refusal.write} refused: ${refusal.reason}`;
  const viaLeases = leaseRenewalsFor(tap, id).some((c) => c.at >= since && c.status === 200);
  return viaLeases
    ? `lease renewal (/jobs/leases) answered ${refusal.reason}`
    : `renewal delta (empty, /jobs/batch) refused: ${refusal.reason}`;
}

const cancel: Scenario = (cell) => {
  const capability = `${cell.prefix}-cancel`;
  const started = deferred();
  const aborted = deferred<JobAbortedError>();
  const late: { progress?: boolean; complete?: boolean } = {};
  return withWorker(
    cell,
    'cancel',
    {
      capability,
      renewEveryMs: 300,
      handler: ({ signal, progress, complete }) =>
        new Promise((resolve) => {
          started.resolve();
          signal.addEventListener('abort', async () => {
            aborted.resolve(signal.reason as JobAbortedError);
            // Writes after the abort: none may change the job.
            late.progress = await progress(0.9, 'after cancel');
            late.complete = await complete({ late: true });
            resolve({ should: 'not be stored' });
          });
        }),
    },
    async ({ client, notices }) => {
      const { id } = await client.submit({ capability, submitted_by: 'skew', submitted_payload: {} });
      await started.promise;
      // Running for a while: renewed once, so the worker's claim-time reads are behind it.
      await until(
        'a first lease renewal',
        () =>
          leaseRenewalsFor(cell.tap, id).some((c) => c.status === 200) ||
          deltasFor(cell.tap, id).some((d) => isEmptyDelta(d.delta) && d.call.status === 200),
      );
      const cancelAt = Date.now();
      expect(await client.cancel(id, 'skew test')).toMatchObject({ status: 'cancelled' });
      const after = settledFields(await observe(cell, id));
      expect(after).toMatchObject({ status: 'cancelled', result: null });
      const reason = await Promise.race([aborted.promise, sleep(10_000).then(() => undefined)]);
      expect(reason, 'the handler to be aborted').toBeDefined();
      await until('the worker to settle the job', () => settledNotice(notices, id));
      expect(settledNotice(notices, id)).toMatchObject({ outcome: 'abandoned', committed: false });
      expect(late).toEqual({ progress: false, complete: false });
      expect(settledFields(await observe(cell, id))).toEqual(after);
      const lateWrites = deltasFor(cell.tap, id).filter(
        (d) => d.call.at >= cancelAt && !isEmptyDelta(d.delta),
      );
      expect(lateWrites.filter((d) => d.call.response?.accepted)).toEqual([]);
      const lateHow = lateWrites.length
        ? `late writes refused (${lateWrites.map((d) => d.rejected).join(', ')})`
        : 'late writes withheld by the SDK';
      return `learnt via ${learnt(cell.tap, notices, id, cancelAt)}; aborted (${reason?.code}); ${lateHow}; job unchanged`;
    },
    { expectsRefusals: true },
  );
};

const supersession: Scenario = async (cell) => {
  const capability = `${cell.prefix}-supersede`;
  // A's own tap: partitioning it cuts A (worker and heartbeat) off the registry.
  const tapA = await startWireTap(cell.started.url);
  const aStarted = deferred<number | null>();
  const finishA = deferred();
  try {
    return await withWorker(
      cell,
      'stale-a',
      {
        capability,
        // One job at a time: with a free slot, A would also have a claim parked
        // on the registry when the partition begins (sent just before it); that
        // claim, still open on the registry's side, would be woken first when the
        // lease sweep requeues the job, and its answer lost in the partition:
        // an attempt burned, not the scenario this cell is about.
        concurrency: 1,
        handler: async ({ claimEpoch }) => {
          aStarted.resolve(claimEpoch);
          await finishA.promise;
          return { by: 'A' };
        },
      },
      async ({ sdk, client, notices: aNotices }) => {
        const { id } = await client.submit({
          capability,
          submitted_by: 'skew',
          submitted_payload: {},
          max_duration: shortLeaseSeconds,
          max_retries: 1,
        });
        const epochA = await aStarted.promise;
        // A is cut off: its lease lapses, the job is re-queued, B claims and completes it.
        tapA.partition();
        const done = await withWorker(
          cell,
          'fresh-b',
          { capability, handler: async ({ claimEpoch }) => ({ by: 'B', epoch: claimEpoch }) },
          ({ client: consumer }) => sdk.waitForJob(consumer, id, { timeoutMs: 30_000 }),
        );
        expect(done).toMatchObject({ status: 'completed', result: { by: 'B' }, attempt_count: 2 });
        // A comes back and finishes its (stale) attempt.
        const healAt = Date.now();
        tapA.heal();
        finishA.resolve();
        await until('A to settle its stale attempt', () => settledNotice(aNotices, id), 20_000);
        expect(settledNotice(aNotices, id)).toMatchObject({ committed: false });
        expect(settledFields(await observe(cell, id))).toEqual(settledFields(done));
        const staleWrites = deltasFor(tapA, id).filter((d) => d.call.at >= healAt && d.call.status !== 0);
        expect(staleWrites.filter((d) => d.call.response?.accepted)).toEqual([]);
        const completion = staleWrites.find((d) => d.delta.status === 'completed');
        const abort = aNotices.find((n) => n.type === 'aborted' && n.jobId === id);
        expect(abort).toBeDefined();
        // The handler returns as the partition heals, so its completion goes out before any renewal.
        const how = completion
          ? `its completion sent and refused: ${completion.rejected}`
          : `learnt via ${learnt(tapA, aNotices, id, healAt)}, its completion withheld`;
        return (
          `stale owner (epoch ${epochA}) back after its lease lapsed: ${how}; handler aborted ` +
          `(${abort?.type === 'aborted' ? abort.reason : '?'}); B's result kept (claim_epoch ${done.claim_epoch})`
        );
      },
      { url: tapA.url, expectsRefusals: true },
    );
  } finally {
    finishA.resolve();
    await tapA.close();
  }
};

const keepAlive: Scenario = (cell) => {
  const capability = `${cell.prefix}-keepalive`;
  const silentMs = shortLeaseSeconds * 2_500;
  return withWorker(
    cell,
    'keepalive',
    {
      capability,
      handler: async () => {
        await sleep(silentMs); // silent: no progress, no events
        return { slept: silentMs };
      },
    },
    async ({ sdk, client }) => {
      const { id } = await client.submit({
        capability,
        submitted_by: 'skew',
        submitted_payload: {},
        max_duration: shortLeaseSeconds,
        max_retries: 0, // a lapsed lease would fail the job
      });
      const job = await sdk.waitForJob(client, id, { timeoutMs: 30_000 });
      expect(job).toMatchObject({
        status: 'completed',
        result: { slept: silentMs },
        attempt_count: 1,
        claim_epoch: 1,
      });
      const viaLeases = leaseRenewalsFor(cell.tap, id).filter((c) => c.status === 200);
      const viaDeltas = deltasFor(cell.tap, id).filter((d) => isEmptyDelta(d.delta) && !d.rejected);
      expect(viaLeases.length + viaDeltas.length).toBeGreaterThan(0);
      const how = viaLeases.length
        ? 'renewed via /jobs/leases (fenced)'
        : `renewed via empty deltas on /jobs/batch, ${fencing(viaDeltas[0]?.delta)}`;
      return `kept for ${silentMs / 1000} s on a ${shortLeaseSeconds} s lease: ${how}`;
    },
  );
};

export const sdkScenarios: Record<ScenarioKey, Scenario> = {
  completion,
  progress,
  retry,
  cancel,
  supersession,
  'keep-alive': keepAlive,
};

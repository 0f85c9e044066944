import type { ClaimedJob, LeaseOutcome, RenewLeasesResponse } from '@mesh/protocol';
import { JobAbortedError, JobWorker, RegistryClient, RetryableError, type WorkerNotice } from '@mesh/sdk';
import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from './targets.ts';

/**
 * Issue 19, the SDK side: a lease renewal whose answer arrives after the
 * handler's attempt settled must not abort it, and a cancel that lands while
 * a renewal is on its way reaches the handler as `cancelled`. The interleaving
 * is forced: the worker's client holds its next renewal until the test lets
 * it go (the registry and its database are real).
 */
const db = useTestDatabase();
let registry: RegistryProcess;
beforeAll(async () => {
  registry = await spawnRegistry({ databaseUrl: db.url, replicaId: 'renewal' });
}, 60_000);
afterAll(async () => {
  await registry?.stop();
});

interface HeldRenewal {
  /** Resolves when the worker sent its renewal (with what it asked for). */
  reached: Promise<{ id: string; claim_epoch: number }[]>;
  /** Lets the renewal go to the registry; resolves with the answer the worker gets. */
  open(rewrite?: (res: RenewLeasesResponse) => RenewLeasesResponse): Promise<RenewLeasesResponse | undefined>;
}

/** The worker's client, with its next renewal held and its claims limited. */
class GatedClient extends RegistryClient {
  claimsLeft = 1;
  private held:
    | {
        reached: (leases: { id: string; claim_epoch: number }[]) => void;
        opened: Promise<(res: RenewLeasesResponse) => RenewLeasesResponse>;
        answered: (res: RenewLeasesResponse | undefined) => void;
      }
    | undefined;

  holdNextRenewal(): HeldRenewal {
    let reached: (leases: { id: string; claim_epoch: number }[]) => void = () => {};
    let open: (rewrite: (res: RenewLeasesResponse) => RenewLeasesResponse) => void = () => {};
    let answered: (res: RenewLeasesResponse | undefined) => void = () => {};
    const gotAnswer = new Promise<RenewLeasesResponse | undefined>((r) => {
      answered = r;
    });
    const result: HeldRenewal = {
      reached: new Promise((r) => {
        reached = r;
      }),
      open: (rewrite = (res) => res) => {
        open(rewrite);
        return gotAnswer;
      },
    };
    this.held = {
      reached,
      opened: new Promise((r) => {
        open = r;
      }),
      answered,
    };
    return result;
  }

  override async claim(capability: string, instanceId: string, max = 1): Promise<ClaimedJob[]> {
    if (this.claimsLeft <= 0) return [];
    const claimed = await super.claim(capability, instanceId, max);
    this.claimsLeft -= claimed.length;
    return claimed;
  }

  override async renewLeases(
    instanceId: string,
    leases: { id: string; claim_epoch: number }[],
  ): Promise<RenewLeasesResponse | undefined> {
    const held = this.held;
    if (!held) return super.renewLeases(instanceId, leases);
    this.held = undefined;
    held.reached(leases);
    const rewrite = await held.opened;
    const res = await super.renewLeases(instanceId, leases);
    const answer = res && rewrite(res);
    held.answered(answer);
    return answer;
  }
}

/** What a registry before the fix of issue 19 answered a renewal that raced a completion or a cancel. */
const asBeforeTheFix = (res: RenewLeasesResponse): RenewLeasesResponse => ({
  results: res.results.map((r) => ({ ...r, outcome: 'superseded' as LeaseOutcome, status: 'working' })),
});

/** Lets every callback queued by the answer (the worker's handling of it) run. */
const drain = () => new Promise((r) => setImmediate(r));

let n = 0;
function setup() {
  const instanceId = `renewal-worker-${++n}`;
  const capability = `renewal-cap-${n}`;
  const client = new GatedClient({ urls: [registry.url], instanceId });
  const plain = new RegistryClient({ urls: [registry.url] });
  const notices: WorkerNotice[] = [];
  const submit = async () =>
    (await plain.submit({ capability, submitted_by: 't', submitted_payload: {} })).id as string;
  return { instanceId, capability, client, plain, notices, submit };
}

describe('lease renewals the worker gets back late (forced interleaving)', () => {
  it.each([
    ['completed', 'the registry answers (terminal)', undefined],
    ['completed', 'a registry before the fix answered (superseded)', asBeforeTheFix],
    ['released', 'the registry answers (superseded: another owner claimed it since)', undefined],
  ] as const)(
    'ignores a renewal answer that arrives after the attempt %s: %s',
    async (ending, _, rewrite) => {
      const { instanceId, capability, client, plain, notices, submit } = setup();
      const renewal = client.holdNextRenewal();
      let signal: AbortSignal | undefined;
      const worker = new JobWorker({
        client,
        instanceId,
        capability,
        concurrency: 1,
        renewEveryMs: 100,
        // Polls instead of long-polling: a parked claim of this worker would be
        // woken by the release and take the job back before 'another-agent'.
        longPollMs: 0,
        onNotice: (x) => notices.push(x),
        handler: async (ctx) => {
          signal = ctx.signal;
          // The renewal of this attempt is on its way when the handler ends.
          await renewal.reached;
          if (ending === 'released') throw new RetryableError('try elsewhere');
          return { done: true };
        },
      });
      worker.start();
      try {
        const id = await submit();
        expect(await renewal.reached).toEqual([{ id, claim_epoch: 1 }]);
        const settled = await until('the attempt to settle', () =>
          notices.find((x) => x.type === 'settled' && x.jobId === id),
        );
        expect(settled).toMatchObject({ outcome: ending, committed: true, claimEpoch: 1 });
        if (ending === 'released') {
          const [next] = await plain.claim(capability, 'another-agent');
          expect(next).toMatchObject({ id, claim_epoch: 2 });
        }
        const answer = await renewal.open(rewrite);
        expect(answer?.results[0]?.outcome).toBe(
          ending === 'completed' && !rewrite ? 'terminal' : 'superseded',
        );
        await drain();
        expect(notices.slice(notices.indexOf(settled))).toEqual([settled]);
        expect(signal?.aborted).toBe(false);
        expect(await plain.getJob(id)).toMatchObject(
          ending === 'completed'
            ? { status: 'completed', claim_epoch: 1, result: { done: true } }
            : { status: 'working', claim_epoch: 2, owner_instance_id: 'another-agent' },
        );
      } finally {
        await worker.stop();
      }
    },
  );

  it.each([
    ['the registry answers (cancelled)', undefined],
    ['a registry before the fix answered (superseded)', asBeforeTheFix],
  ] as const)('aborts with `cancelled` when a cancel lands during a renewal: %s', async (_, rewrite) => {
    const { instanceId, capability, client, plain, notices, submit } = setup();
    const renewal = client.holdNextRenewal();
    let reason: unknown;
    const worker = new JobWorker({
      client,
      instanceId,
      capability,
      concurrency: 1,
      renewEveryMs: 100,
      onNotice: (x) => notices.push(x),
      handler: ({ signal }) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            reason = signal.reason;
            resolve({ should: 'not be stored' });
          });
        }),
    });
    worker.start();
    try {
      const id = await submit();
      await renewal.reached;
      expect((await plain.cancel(id, 'user asked')).status).toBe('cancelled');
      const answer = await renewal.open(rewrite);
      expect(answer?.results[0]?.outcome).toBe(rewrite ? 'superseded' : 'cancelled');
      await until('the handler to be aborted', () => reason);
      expect(reason).toBeInstanceOf(JobAbortedError);
      expect((reason as JobAbortedError).code).toBe('cancelled');
      expect(notices.filter((x) => x.type === 'aborted')).toEqual([
        expect.objectContaining({ jobId: id, claimEpoch: 1, reason: 'cancelled' }),
      ]);
      await until('the attempt to settle', () => notices.find((x) => x.type === 'settled'));
      expect(await plain.getJob(id)).toMatchObject({ status: 'cancelled', result: null });
    } finally {
      await worker.stop();
    }
  });

  it('still aborts with `claim_superseded` when the claim did move on during the renewal', async () => {
    const { instanceId, capability, client, plain, notices, submit } = setup();
    const renewal = client.holdNextRenewal();
    let reason: unknown;
    const worker = new JobWorker({
      client,
      instanceId,
      capability,
      concurrency: 1,
      renewEveryMs: 100,
      onNotice: (x) => notices.push(x),
      handler: ({ signal }) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            reason = signal.reason;
            resolve({ should: 'not be stored' });
          });
        }),
    });
    worker.start();
    try {
      const id = await submit();
      await renewal.reached;
      await plain.request('POST', `/jobs/${id}/reclaim`);
      expect(await plain.claim(capability, 'another-agent')).toMatchObject([{ id, claim_epoch: 2 }]);
      expect((await renewal.open())?.results[0]?.outcome).toBe('superseded');
      await until('the handler to be aborted', () => reason);
      expect((reason as JobAbortedError).code).toBe('claim_superseded');
      await until('the attempt to settle', () => notices.find((x) => x.type === 'settled'));
      expect(await plain.getJob(id)).toMatchObject({
        status: 'working',
        claim_epoch: 2,
        owner_instance_id: 'another-agent',
      });
    } finally {
      await worker.stop();
    }
  });
});

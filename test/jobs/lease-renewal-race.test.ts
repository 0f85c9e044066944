import { createDb, type Sql } from '@mesh/db';
import { type RegistryProcess, spawnRegistry } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStore } from '../../apps/registry/src/services/jobs.ts';
import { call } from '../support/http.ts';
import { useTestRegistry } from '../support/registry-app.ts';

/**
 * Issue 19: a lease renewal racing the owner's completion, or a cancel, must
 * be told what became of the job (`terminal`, `cancelled`), never that the
 * caller was superseded: its claim was never taken from it.
 */
const r = useTestRegistry();

let n = 0;
const cap = () => `race-${++n}`;
const settings = { defaultLeaseSeconds: 300, requireClaimEpoch: false, replicaId: 'locker' };

/** A claimed job of instance `w` at epoch 1. */
async function claimedJob(): Promise<string> {
  const capability = cap();
  const { body } = await r.call('POST', '/jobs', { capability, submitted_by: 's', submitted_payload: {} });
  const claimed = (await r.call('POST', '/jobs/claim', { capability, instance_id: 'w' })).body.claimed;
  expect(claimed).toMatchObject([{ id: body.id, claim_epoch: 1 }]);
  return body.id as string;
}

/**
 * Forces the interleaving: a transaction of its own locks the job row, the
 * renewal is sent and observed blocked on that lock (pg_blocking_pids, no
 * sleep), then the transaction runs `write` (the registry's own statement for
 * the competing change) and commits. The renewal's statement then re-checks
 * the row as committed by the other transaction.
 */
async function renewalBlockedBehind(id: string, write: (jobs: JobStore) => Promise<unknown>) {
  const locker = createDb(r.db.url, { max: 1, applicationName: 'race-locker' }).sql;
  try {
    let renewal: ReturnType<typeof r.call> | undefined;
    await locker.begin(async (tx) => {
      const [{ pid }] = (await tx`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
      await tx`select id from jobs where id = ${id} for update`;
      renewal = r.call('POST', '/jobs/leases', { instance_id: 'w', leases: [{ id, claim_epoch: 1 }] });
      for (;;) {
        const [blocked] = await r.sql<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity where ${pid}::int = any(pg_blocking_pids(pid))`;
        if ((blocked?.n ?? 0) > 0) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await write(new JobStore(tx as unknown as Sql, settings));
    });
    return (await (renewal as ReturnType<typeof r.call>)).body.results;
  } finally {
    await locker.end();
  }
}

describe('a lease renewal racing the end of its job (forced interleaving)', () => {
  it("answers `terminal` when the owner's completion commits while the renewal waits on the row", async () => {
    const id = await claimedJob();
    const results = await renewalBlockedBehind(id, async (jobs) => {
      expect(
        await jobs.applyDeltas('w', [{ id, claim_epoch: 1, status: 'completed', result: { ok: true } }]),
      ).toEqual({ accepted: 1, rejected: [] });
    });
    expect(results).toEqual([{ id, outcome: 'terminal', status: 'completed', lease_expires_at: null }]);
  });

  it('answers `cancelled` when a cancel commits while the renewal waits on the row', async () => {
    const id = await claimedJob();
    const results = await renewalBlockedBehind(id, (jobs) => jobs.cancel(id, 'race'));
    expect(results).toEqual([{ id, outcome: 'cancelled', status: 'cancelled', lease_expires_at: null }]);
  });

  it('still answers `superseded` when a force reclaim and a new claim commit while the renewal waits', async () => {
    const id = await claimedJob();
    const results = await renewalBlockedBehind(id, async (jobs) => {
      await jobs.reclaim(id);
      const [job] = await r.sql<{ capability: string }[]>`select capability from jobs where id = ${id}`;
      expect(await jobs.claim(job?.capability as string, 'other', 1)).toMatchObject([{ id, claim_epoch: 2 }]);
    });
    expect(results).toEqual([{ id, outcome: 'superseded', status: 'working', lease_expires_at: null }]);
  });
});

describe('a lease renewal racing the end of its job (raw HTTP, a registry process)', () => {
  let registry: RegistryProcess;
  beforeAll(async () => {
    registry = await spawnRegistry({ databaseUrl: r.db.url, replicaId: 'race' });
  }, 60_000);
  afterAll(async () => {
    await registry?.stop();
  });

  /** Claims a fresh job, then sends `end` and the renewal at the same moment, `tries` times; counts the renewal's outcomes. */
  async function race(tries: number, end: (id: string) => Promise<{ status: number }>) {
    const seen: Record<string, number> = {};
    for (let i = 0; i < tries; i++) {
      const capability = cap();
      const { body: created } = await call(registry.url, 'POST', '/jobs', {
        capability,
        submitted_by: 's',
        submitted_payload: {},
      });
      const id = created.id as string;
      await call(registry.url, 'POST', '/jobs/claim', { capability, instance_id: 'w' });
      const renew = () =>
        call(registry.url, 'POST', '/jobs/leases', { instance_id: 'w', leases: [{ id, claim_epoch: 1 }] });
      // Alternate which request leaves first.
      const [ended, renewed] =
        i % 2 === 0
          ? await Promise.all([end(id), renew()])
          : await Promise.all([renew(), end(id)]).then(([a, b]) => [b, a] as const);
      expect(ended.status).toBe(200);
      const result = renewed.body.results[0];
      seen[result.outcome] = (seen[result.outcome] ?? 0) + 1;
      // A renewal that lost the race reports the row as the other write left it.
      if (result.outcome !== 'renewed' && result.status === 'working')
        seen['stale status'] = (seen['stale status'] ?? 0) + 1;
    }
    return seen;
  }

  it("never answers `superseded` to a renewal racing the owner's completion", async () => {
    const seen = await race(150, async (id) => {
      const res = await call(registry.url, 'POST', '/jobs/batch', {
        instance_id: 'w',
        deltas: [{ id, claim_epoch: 1, status: 'completed', result: { ok: true } }],
      });
      expect(res.body).toEqual({ accepted: 1, rejected: [] });
      return res;
    });
    if (process.env.MESH_TEST_RACE_COUNTS) console.info('renewal vs completion', seen);
    expect(
      Object.keys(seen).filter((o) => o !== 'terminal' && o !== 'renewed'),
      JSON.stringify(seen),
    ).toEqual([]);
  });

  it('never answers `superseded` to a renewal racing a cancel', async () => {
    const seen = await race(150, (id) => call(registry.url, 'POST', `/jobs/${id}/cancel`, {}));
    if (process.env.MESH_TEST_RACE_COUNTS) console.info('renewal vs cancel', seen);
    expect(
      Object.keys(seen).filter((o) => o !== 'cancelled' && o !== 'renewed'),
      JSON.stringify(seen),
    ).toEqual([]);
  });
});

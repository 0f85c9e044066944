import { JobWorker, RegistryClient } from '@mesh/sdk';
import { spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { startWireTap, type WireTap } from '../support/wire-tap.ts';
import { targets, until, useTarget } from './targets.ts';

/**
 * Terminal writes that are ready together go in one `POST /jobs/batch`
 * (packages/sdk/src/delta-batcher.ts, issue 17): each delta still gets its own
 * answer, so one refused delta fails only its own job; a registry that cannot
 * answer deltas apart (MCP Mesh 3.7) gets them one by one, as before.
 */
const db = useTestDatabase();
const taps: WireTap[] = [];
afterAll(async () => {
  for (const t of taps.splice(0)) await t.close();
});

const terminalBatches = (tap: WireTap) =>
  tap.calls
    .filter((c) => c.path === '/jobs/batch')
    .map((c) => (c.body.deltas as { id: string; status?: string }[]).filter((d) => d.status === 'completed'))
    .filter((d) => d.length > 0);

describe('completions batched by the SDK', () => {
  it('shares one request among deltas made together; a refused one fails alone', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'batching' });
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const tap = await startWireTap(r.url);
      taps.push(tap);
      const client = new RegistryClient({ urls: [tap.url] });
      const ids: string[] = [];
      for (let i = 0; i < 3; i++)
        ids.push(
          (await client.submit({ capability: 'cb-direct', submitted_by: 't', submitted_payload: { i } })).id,
        );
      const claimed = await client.claim('cb-direct', 'inst-1', 3);
      expect(claimed).toHaveLength(3);
      // Another claim of the second job, made behind the SDK's back.
      const victim = claimed[1]?.id as string;
      await sql`update jobs set claim_epoch = claim_epoch + 1, owner_instance_id = 'someone-else' where id = ${victim}`;

      const outcomes = await Promise.all(
        claimed.map((j) =>
          client.delta(
            'inst-1',
            { id: j.id, claim_epoch: j.claim_epoch, status: 'completed', result: { n: j.id } },
            true,
          ),
        ),
      );
      const batches = terminalBatches(tap);
      expect(batches.map((b) => b.length)).toEqual([3]);
      expect(outcomes[0]).toEqual({ accepted: true });
      expect(outcomes[1]).toEqual({ accepted: false, rejected: { id: victim, reason: 'claim_superseded' } });
      expect(outcomes[2]).toEqual({ accepted: true });
      const rows = await sql<{ id: string; status: string }[]>`
        select id, status from jobs where id = any(${ids}::uuid[]) order by id`;
      expect(Object.fromEntries(rows.map((x) => [x.id, x.status]))).toEqual(
        Object.fromEntries(ids.map((id) => [id, id === victim ? 'working' : 'completed'])),
      );

      // Without `coalesce`, or without an epoch, a delta goes alone at once.
      const [lone] = await client.claim('cb-direct', 'inst-1', 1).then(async (got) => {
        if (got.length) return got;
        await client.submit({ capability: 'cb-direct', submitted_by: 't', submitted_payload: {} });
        return client.claim('cb-direct', 'inst-1', 1);
      });
      const before = tap.calls.length;
      expect(
        await client.delta('inst-1', { id: lone?.id, claim_epoch: lone?.claim_epoch, progress: 0.5 }),
      ).toEqual({ accepted: true });
      expect(tap.calls.slice(before).map((c) => c.body.deltas.length)).toEqual([1]);
    } finally {
      await sql.end();
      await r.stop();
    }
  });

  it('a worker whose jobs end together completes them in fewer requests than jobs, each once', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'batching-worker' });
    try {
      const tap = await startWireTap(r.url);
      taps.push(tap);
      const client = new RegistryClient({ urls: [tap.url] });
      const ids: string[] = [];
      for (let i = 0; i < 8; i++)
        ids.push(
          (await client.submit({ capability: 'cb-worker', submitted_by: 't', submitted_payload: { i } })).id,
        );
      const worker = new JobWorker({
        client,
        instanceId: 'cb-w',
        capability: 'cb-worker',
        concurrency: 8,
        handler: async ({ payload }) => ({ echoed: payload.i }),
      });
      worker.start();
      try {
        for (const [i, id] of ids.entries()) {
          const job = await until(`job ${i} to complete`, async () => {
            const j = await client.getJob(id);
            return j.status === 'completed' ? j : undefined;
          });
          expect(job).toMatchObject({ result: { echoed: i }, owner_instance_id: 'cb-w', claim_epoch: 1 });
        }
      } finally {
        await worker.stop();
      }
      const batches = terminalBatches(tap);
      expect(
        batches
          .flat()
          .map((d) => d.id)
          .sort(),
      ).toEqual([...ids].sort());
      expect(batches.length).toBeLessThan(ids.length);
      expect(Math.max(...batches.map((b) => b.length))).toBeGreaterThan(1);
    } finally {
      await r.stop();
    }
  });
});

describe('against MCP Mesh 3.7.1, which refuses a whole batch for one bad delta', () => {
  const target = targets.find((t) => t.name === 'mcp-mesh-3.7.1');
  if (!target) throw new Error('no MCP Mesh target');
  const registry = useTarget(target);

  it('sends each completion alone', async () => {
    await registry.ready;
    const tap = await startWireTap(registry.url);
    taps.push(tap);
    const client = new RegistryClient({ urls: [tap.url] });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++)
      ids.push(
        (await client.submit({ capability: 'cb-37', submitted_by: 't', submitted_payload: { i } })).id,
      );
    const worker = new JobWorker({
      client,
      instanceId: 'cb-37-w',
      capability: 'cb-37',
      concurrency: 4,
      handler: async () => ({ ok: true }),
    });
    worker.start();
    try {
      for (const id of ids)
        await until('the job to complete', async () => (await client.getJob(id)).status === 'completed');
    } finally {
      await worker.stop();
    }
    const batches = terminalBatches(tap);
    expect(batches.map((b) => b.length)).toEqual(ids.map(() => 1));
  });
});

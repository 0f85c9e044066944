import { createDb } from '@mesh/db';
import { createLogger } from '@mesh/registry';
import { describe, expect, it } from 'vitest';
import { Sweeper } from '../../apps/registry/src/services/sweeper.ts';
import { useTestRegistry } from '../support/registry-app.ts';

const r = useTestRegistry({
  sweep: { staleTimeoutMs: 4_000, eventRetentionMs: 60_000, jobRetentionMs: 120_000 },
});
const db = r.db;

let n = 0;
const cap = () => `sw-${++n}`;
async function claimed(extra: Record<string, unknown> = {}) {
  const c = cap();
  const id = (
    await r.call('POST', '/jobs', { capability: c, submitted_by: 's', submitted_payload: {}, ...extra })
  ).body.id as string;
  await r.call('POST', '/jobs/claim', { capability: c, instance_id: 'w1' });
  return { id, c };
}
const job = async (id: string) => (await r.call('GET', `/jobs/${id}`)).body;
const expireLease = (id: string) =>
  r.sql`update jobs set lease_expires_at = now() - interval '1 second' where id = ${id}`;

describe('lease expiry (reference §4.6 phase 3)', () => {
  it('re-queues within budget and fails past it; the old owner is fenced', async () => {
    const { id, c } = await claimed({ max_retries: 1 });
    await expireLease(id);
    expect(await r.sweeper.expireLeases()).toEqual({ requeued: 1, failed: 0 });
    expect(await job(id)).toMatchObject({
      status: 'working',
      owner_instance_id: null,
      lease_expires_at: null,
      attempt_count: 1,
    });
    await r.call('POST', '/jobs/claim', { capability: c, instance_id: 'w1' });
    await expireLease(id);
    expect(await r.sweeper.expireLeases()).toEqual({ requeued: 0, failed: 1 });
    expect(await job(id)).toMatchObject({
      status: 'failed',
      error: 'lease expired: no completion within lease window',
      attempt_count: 2,
    });
    const late = await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id, claim_epoch: 2, status: 'completed', result: {} }],
    });
    expect(late.body.rejected).toEqual([{ id, reason: 'claim_superseded' }]);
  });

  it('normalises an expired input_required job back to working', async () => {
    const { id, c } = await claimed();
    await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id, claim_epoch: 1, status: 'input_required' }],
    });
    await expireLease(id);
    await r.sweeper.expireLeases();
    expect(await job(id)).toMatchObject({ status: 'working', owner_instance_id: null });
    expect(
      (await r.call('POST', '/jobs/claim', { capability: c, instance_id: 'w2' })).body.claimed,
    ).toHaveLength(1);
  });

  it('leaves unexpired leases, NULL leases (push mode) and terminal jobs alone', async () => {
    const live = await claimed();
    const push = (
      await r.call('POST', '/jobs', {
        capability: cap(),
        submitted_by: 's',
        submitted_payload: {},
        owner_instance_id: 'p',
      })
    ).body.id;
    const done = await claimed();
    await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id: done.id, claim_epoch: 1, status: 'completed', result: {} }],
    });
    await expireLease(done.id);
    await r.sweeper.expireLeases();
    expect(await job(live.id)).toMatchObject({ owner_instance_id: 'w1' });
    expect(await job(push)).toMatchObject({ owner_instance_id: 'p', status: 'working' });
    expect(await job(done.id)).toMatchObject({ status: 'completed' });
  });
});

describe('total_deadline (§11 items 7 and 8)', () => {
  it('fails the job with deadline_exceeded and wakes a parked handler with an event', async () => {
    const { id } = await claimed({ total_deadline: Math.floor(Date.now() / 1000) + 3600 });
    const parked = r.call('GET', `/jobs/${id}/events?instance_id=w1&claim_epoch=1&wait=30`);
    await new Promise((res) => setTimeout(res, 200));
    await r.sql`update jobs set total_deadline = now() - interval '1 second' where id = ${id}`;
    const started = Date.now();
    expect(await r.sweeper.expireDeadlines()).toBe(1);
    const res = await parked;
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(res.status).toBe(200);
    expect(res.body.events).toEqual([
      expect.objectContaining({ type: 'deadline_exceeded', payload: { reason: 'deadline_exceeded' } }),
    ]);
    expect(await job(id)).toMatchObject({
      status: 'failed',
      error: 'deadline_exceeded',
      owner_instance_id: null,
    });
    expect(await r.sweeper.expireDeadlines()).toBe(0);
  });

  it('never overwrites a completion that committed first', async () => {
    const { id } = await claimed({ total_deadline: Math.floor(Date.now() / 1000) + 3600 });
    await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id, claim_epoch: 1, status: 'completed', result: 'ok' }],
    });
    await r.sql`update jobs set total_deadline = now() - interval '1 second' where id = ${id}`;
    expect(await r.sweeper.expireDeadlines()).toBe(0);
    expect(await job(id)).toMatchObject({ status: 'completed', result: 'ok', error: null });
  });
});

describe('stale ceiling (opt-in, reference §4.6 phase 5)', () => {
  it('fails deadline-less jobs older than the ceiling, once, with a stale event', async () => {
    const queued = (
      await r.call('POST', '/jobs', { capability: cap(), submitted_by: 's', submitted_payload: {} })
    ).body.id;
    const longer = (
      await r.call('POST', '/jobs', {
        capability: cap(),
        submitted_by: 's',
        submitted_payload: {},
        max_duration: 10_800,
      })
    ).body.id;
    const exempt = (
      await r.call('POST', '/jobs', {
        capability: cap(),
        submitted_by: 's',
        submitted_payload: {},
        total_deadline: Math.floor(Date.now() / 1000) + 86_400,
      })
    ).body.id;
    await r.sql`update jobs set submitted_at = now() - interval '5 seconds' where id in (${queued}, ${exempt})`;
    await r.sql`update jobs set submitted_at = now() - interval '4 hours' where id = ${longer}`;
    expect(await r.sweeper.expireStale()).toBe(2);
    expect(await r.sweeper.expireStale()).toBe(0);
    const message = 'stale: no total_deadline set and exceeded the MCP_MESH_JOB_STALE_TIMEOUT ceiling (4s)';
    expect(await job(queued)).toMatchObject({ status: 'failed', error: message });
    expect(await job(longer)).toMatchObject({
      error: 'stale: no total_deadline set and exceeded max_duration (3h0m0s)',
    });
    expect(await job(exempt)).toMatchObject({ status: 'working' });
    const events = (await r.call('GET', `/jobs/${queued}/events`)).body.events;
    expect(events).toEqual([
      expect.objectContaining({ type: 'stale', payload: { reason: 'stale', detail: message } }),
    ]);
  });
});

describe('retention (reference §11 item 13)', () => {
  it('purges events of jobs finished past the event retention, once, and keeps live jobs events', async () => {
    const old = await claimed();
    const live = await claimed();
    for (const id of [old.id, live.id]) await r.call('POST', `/jobs/${id}/events`, { type: 'x' });
    await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id: old.id, claim_epoch: 1, status: 'completed', result: {} }],
    });
    await r.sql`update jobs set finished_at = now() - interval '2 minutes' where id = ${old.id}`;
    await r.sql`update job_events set created_at = now() - interval '1 day'`;
    expect(await r.sweeper.purgeEvents()).toBe(1);
    expect(await r.sweeper.purgeEvents()).toBe(0);
    expect((await r.call('GET', `/jobs/${old.id}/events`)).body.events).toEqual([]);
    expect((await r.call('GET', `/jobs/${old.id}`)).status).toBe(200);
    expect((await r.call('GET', `/jobs/${live.id}/events`)).body.events).toHaveLength(1);
  });

  it('deletes finished jobs past the job retention', async () => {
    const gone = await claimed();
    const kept = await claimed();
    for (const j of [gone, kept]) {
      await r.call('POST', '/jobs/batch', {
        instance_id: 'w1',
        deltas: [{ id: j.id, claim_epoch: 1, status: 'failed', error: 'x' }],
      });
    }
    await r.sql`update jobs set finished_at = now() - interval '3 minutes' where id = ${gone.id}`;
    expect(await r.sweeper.deleteFinishedJobs()).toBeGreaterThanOrEqual(1);
    expect((await r.call('GET', `/jobs/${gone.id}`)).status).toBe(404);
    expect((await r.call('GET', `/jobs/${kept.id}`)).status).toBe(200);
  });
});

describe('sweeps on every replica at once', () => {
  it('apply each transition exactly once when four replicas sweep concurrently', async () => {
    const made: string[] = [];
    for (let i = 0; i < 40; i++) made.push((await claimed({ max_retries: i % 2 })).id);
    await r.sql`update jobs set lease_expires_at = now() - interval '1 second' where id = any(${made})`;
    const pools = Array.from({ length: 4 }, () => createDb(db.url, { max: 2 }).sql);
    try {
      const sweepers = pools.map(
        (sql) =>
          new Sweeper(
            sql,
            {
              intervalMs: 1_000,
              staleTimeoutMs: 0,
              eventRetentionMs: 0,
              jobRetentionMs: 0,
              orphanQuietMs: 20_000,
            },
            createLogger({ logLevel: 'silent', logFormat: 'json', replicaId: 'sweep-test' }),
          ),
      );
      const results = await Promise.all(sweepers.map((s) => s.expireLeases()));
      const total = results.reduce(
        (acc, x) => ({ requeued: acc.requeued + x.requeued, failed: acc.failed + x.failed }),
        {
          requeued: 0,
          failed: 0,
        },
      );
      expect(total).toEqual({ requeued: 20, failed: 20 });
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});

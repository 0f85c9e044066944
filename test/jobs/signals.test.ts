import { limits } from '@mesh/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRegistry, type TestRegistry, useTestRegistry } from '../support/registry-app.ts';

/**
 * `POST /jobs/signals` (feature `job-signals`, issue 19): an instance's one
 * long-poll over the claims it holds. It answers what the rows say now
 * (level-triggered) and, while nothing changed, parks until a cancel, a
 * re-claim or an end of one of them commits on any replica.
 */
const a = useTestRegistry();
let b: TestRegistry;
beforeAll(async () => {
  // A second replica over the same database: its own pool and LISTEN connection.
  b = await startTestRegistry(a.db.url);
});
afterAll(async () => {
  await b?.close();
});

let n = 0;
async function claimed(instance = 'w'): Promise<{ id: string; epoch: number }> {
  const capability = `sig-${++n}`;
  const { body } = await a.call('POST', '/jobs', { capability, submitted_by: 's', submitted_payload: {} });
  const [job] = (await a.call('POST', '/jobs/claim', { capability, instance_id: instance })).body.claimed;
  expect(job.id).toBe(body.id);
  return { id: job.id, epoch: job.claim_epoch };
}

const poll = (claims: { id: string; epoch: number }[], wait = 0, instance = 'w') =>
  a.call('POST', '/jobs/signals', {
    instance_id: instance,
    jobs: claims.map((c) => ({ id: c.id, claim_epoch: c.epoch })),
    wait,
  });

describe('POST /jobs/signals', () => {
  it('is advertised in /health', async () => {
    expect((await a.call('GET', '/health')).body.features).toContain('job-signals');
  });

  it('answers nothing for live claims of the caller when it does not wait', async () => {
    const j = await claimed();
    const res = await poll([j]);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ signals: [] });
  });

  it('classifies claims that are no longer the caller’s live claim', async () => {
    const cancelled = await claimed();
    await a.call('POST', `/jobs/${cancelled.id}/cancel`, { reason: 'stop' });
    const reclaimed = await claimed();
    await a.call('POST', `/jobs/${reclaimed.id}/reclaim`);
    const completed = await claimed();
    await a.call('POST', '/jobs/batch', {
      instance_id: 'w',
      deltas: [{ id: completed.id, claim_epoch: completed.epoch, status: 'completed' }],
    });
    const stale = await claimed();
    const live = await claimed();
    const missing = { id: crypto.randomUUID(), epoch: 1 };
    const res = await poll([
      cancelled,
      reclaimed,
      completed,
      { ...stale, epoch: stale.epoch - 1 },
      live,
      missing,
    ]);
    expect(res.body.signals).toEqual([
      { id: cancelled.id, claim_epoch: cancelled.epoch, signal: 'cancelled', status: 'cancelled' },
      { id: reclaimed.id, claim_epoch: reclaimed.epoch, signal: 'superseded', status: 'working' },
      { id: completed.id, claim_epoch: completed.epoch, signal: 'terminal', status: 'completed' },
      { id: stale.id, claim_epoch: stale.epoch - 1, signal: 'superseded', status: 'working' },
      { id: missing.id, claim_epoch: 1, signal: 'not_found', status: null },
    ]);
    // Another instance asking about a claim it does not hold: superseded, never "cancelled".
    const other = await poll([cancelled], 0, 'someone-else');
    expect(other.body.signals[0]).toMatchObject({ signal: 'superseded' });
  });

  it('parks until a cancel committed on another replica, then answers it', async () => {
    const quiet = await claimed();
    const j = await claimed();
    const parked = poll([quiet, j], 30);
    // The cancel goes to replica b; a hears of it through LISTEN/NOTIFY only.
    let answered = false;
    void parked.then(() => {
      answered = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(answered).toBe(false);
    expect((await b.call('POST', `/jobs/${j.id}/cancel`, {})).status).toBe(200);
    const res = await parked;
    expect(res.body.signals).toEqual([
      { id: j.id, claim_epoch: j.epoch, signal: 'cancelled', status: 'cancelled' },
    ]);
  });

  it('parks until a force reclaim on another replica, then answers superseded', async () => {
    const j = await claimed();
    const parked = poll([j], 30);
    await new Promise((r) => setTimeout(r, 50));
    expect((await b.call('POST', `/jobs/${j.id}/reclaim`)).status).toBe(200);
    expect((await parked).body.signals).toEqual([
      { id: j.id, claim_epoch: j.epoch, signal: 'superseded', status: 'working' },
    ]);
  });

  it('parks until a lease-expiry sweep on another replica re-queues the job', async () => {
    const j = await claimed();
    await a.sql`update jobs set lease_expires_at = now() - interval '1 second' where id = ${j.id}`;
    const parked = poll([j], 30);
    await new Promise((r) => setTimeout(r, 50));
    expect(await b.sweeper.expireLeases()).toMatchObject({ requeued: 1 });
    expect((await parked).body.signals).toMatchObject([{ id: j.id, signal: 'superseded' }]);
  });

  it('answers an empty list after `wait` when nothing happened', async () => {
    const j = await claimed();
    const res = await poll([j], 1);
    expect(res.body).toEqual({ signals: [] });
  });

  it('refuses malformed requests with the wire error body', async () => {
    const j = await claimed();
    const bad = [
      { jobs: [{ id: j.id, claim_epoch: j.epoch }] },
      { instance_id: 'w', jobs: [{ claim_epoch: 1 }] },
      { instance_id: 'w', jobs: [{ id: j.id }] },
      { instance_id: 'w', jobs: 'nope' },
    ];
    for (const body of bad) {
      const res = await a.call('POST', '/jobs/signals', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error).toBeTypeOf('string');
    }
    const many = Array.from({ length: limits.maxLeaseRenewals + 1 }, (_, i) => ({
      id: `j${i}`,
      claim_epoch: 1,
    }));
    const res = await a.call('POST', '/jobs/signals', { instance_id: 'w', jobs: many });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe(
      `at most ${limits.maxLeaseRenewals} jobs per call, got ${limits.maxLeaseRenewals + 1}`,
    );
  });
});

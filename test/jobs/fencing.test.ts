import { describe, expect, it } from 'vitest';
import { startTestRegistry, useTestRegistry } from '../support/registry-app.ts';

const r = useTestRegistry();
const db = r.db;

let n = 0;
/** A fresh capability per test keeps queues apart. */
const cap = () => `cap-${++n}`;
const submit = async (capability: string, extra: Record<string, unknown> = {}) =>
  (await r.call('POST', '/jobs', { capability, submitted_by: 's', submitted_payload: {}, ...extra })).body
    .id as string;
const claim = async (capability: string, instance: string) =>
  (await r.call('POST', '/jobs/claim', { capability, instance_id: instance })).body.claimed as {
    id: string;
    claim_epoch: number;
    attempt_count: number;
  }[];
const delta = async (instance: string, d: Record<string, unknown>) =>
  (await r.call('POST', '/jobs/batch', { instance_id: instance, deltas: [d] })).body;
const job = async (id: string) => (await r.call('GET', `/jobs/${id}`)).body;

describe('claim epochs and fencing (reference transcript 04)', () => {
  it('fences deltas by (owner, epoch), and epoch-less deltas by owner only', async () => {
    const c = cap();
    const id = await submit(c, { max_retries: 2 });
    expect((await claim(c, 'w1'))[0]).toMatchObject({ id, claim_epoch: 1, attempt_count: 1 });
    expect((await r.call('POST', `/jobs/${id}/reclaim`)).body).toEqual({
      status: 'working',
      previous_owner_instance_id: 'w1',
      claim_epoch: 1,
    });
    expect(await job(id)).toMatchObject({ owner_instance_id: null, lease_expires_at: null, claim_epoch: 1 });
    expect(await delta('w1', { id, claim_epoch: 1, progress: 0.2 })).toEqual({
      accepted: 0,
      rejected: [{ id, reason: 'claim_superseded' }],
    });
    expect((await delta('w1', { id, progress: 0.2 })).rejected).toEqual([{ id, reason: 'not_owner' }]);
    // Reclaiming an unowned job is allowed and changes nothing.
    expect((await r.call('POST', `/jobs/${id}/reclaim`)).body).toEqual({
      status: 'working',
      previous_owner_instance_id: null,
      claim_epoch: 1,
    });
    // The same instance claims again: a new epoch.
    expect((await claim(c, 'w1'))[0]).toMatchObject({ id, claim_epoch: 2, attempt_count: 2 });
    expect((await delta('w1', { id, claim_epoch: 1, progress: 0.3 })).rejected).toEqual([
      { id, reason: 'claim_superseded' },
    ]);
    // Legacy (epoch-less) from the owner is accepted: that is the 3.7 contract.
    expect(await delta('w1', { id, progress: 0.35 })).toEqual({ accepted: 1, rejected: [] });
    expect((await delta('w2', { id, claim_epoch: 2, progress: 0.4 })).rejected).toEqual([
      { id, reason: 'claim_superseded' },
    ]);
    expect((await delta('w2', { id, progress: 0.4 })).rejected).toEqual([{ id, reason: 'not_owner' }]);
    expect((await delta('w1', { id, claim_epoch: 2, status: 'done' })).rejected).toEqual([
      { id, reason: 'invalid_status' },
    ]);
    expect((await delta('w1', { id, claim_epoch: 7, progress: 0.4 })).rejected).toEqual([
      { id, reason: 'claim_superseded' },
    ]);
    // A non-owner with a bad status learns it is not the owner, not that the status is bad.
    expect((await delta('w2', { id, status: 'done' })).rejected).toEqual([{ id, reason: 'not_owner' }]);
    expect(await job(id)).toMatchObject({ progress: 0.35, claim_epoch: 2, owner_instance_id: 'w1' });
  });

  it('renews the lease on an executor read and fences it; half an identity is a 400', async () => {
    const c = cap();
    const id = await submit(c, { max_duration: 60 });
    await claim(c, 'w1');
    await r.sql`update jobs set lease_expires_at = now() + interval '5 seconds' where id = ${id}`;
    const read = await r.call('GET', `/jobs/${id}/events?instance_id=w1&claim_epoch=1`);
    expect(read.body).toEqual({ events: [], next_after: 0 });
    const lease = (await job(id)).lease_expires_at;
    expect(lease - Math.floor(Date.now() / 1000)).toBeGreaterThanOrEqual(58);
    for (const q of ['instance_id=w1', 'claim_epoch=1', 'instance_id=&claim_epoch=1']) {
      const half = await r.call('GET', `/jobs/${id}/events?${q}`);
      expect(half.status).toBe(400);
      expect(half.body.error).toBe(
        'instance_id and claim_epoch must be supplied together (both for an executor read, or neither for an observer read)',
      );
    }
    const stale = await r.call('GET', `/jobs/${id}/events?instance_id=w1&claim_epoch=0`);
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ error: 'claim_superseded', code: 'claim_superseded' });
    const other = await r.call('GET', `/jobs/${id}/events?instance_id=w2&claim_epoch=1`);
    expect(other.status).toBe(409);
    // Newer SDKs may send the identity as headers: same fence.
    const viaHeaders = await r.call('GET', `/jobs/${id}/events`, undefined, {
      'x-mesh-instance-id': 'w2',
      'x-mesh-claim-epoch': '1',
    });
    expect(viaHeaders.status).toBe(409);
    const ownHeaders = await r.call('GET', `/jobs/${id}/events`, undefined, {
      'x-mesh-instance-id': 'w1',
      'x-mesh-claim-epoch': '1',
    });
    expect(ownHeaders.status).toBe(200);
  });

  it('a force reclaim at the last attempt fails the job instead of leaving an unclaimable row (§11 item 1)', async () => {
    const c = cap();
    const stuck = await submit(c, { max_retries: 0 });
    await claim(c, 'w3');
    const reclaimed = await r.call('POST', `/jobs/${stuck}/reclaim`);
    expect(reclaimed.body).toEqual({ status: 'failed', previous_owner_instance_id: 'w3', claim_epoch: 1 });
    expect(await job(stuck)).toMatchObject({
      status: 'failed',
      error: 'exhausted (reclaim): max retries exceeded',
    });
    // The next job of the capability is not blocked behind it.
    const next = await submit(c);
    expect((await claim(c, 'w3'))[0]?.id).toBe(next);
  });

  it('retires an over-budget queued row found at the head instead of answering "no work" (§11 item 1)', async () => {
    const c = cap();
    const head = await submit(c, { max_retries: 0 });
    const next = await submit(c);
    // An over-budget row in the queue, as MCP Mesh's reclaim leaves them.
    await r.sql`update jobs set attempt_count = 1 where id = ${head}`;
    expect((await claim(c, 'w'))[0]?.id).toBe(next);
    expect(await job(head)).toMatchObject({ status: 'failed', error: 'exhausted: max retries exceeded' });
  });

  it('never claims a cancelled or otherwise terminal job (§11 item 3)', async () => {
    const c = cap();
    const a = await submit(c);
    const b = await submit(c);
    await r.call('POST', `/jobs/${a}/cancel`, { reason: 'no' });
    await r.sql`update jobs set status = 'failed', finished_at = now() where id = ${b}`;
    expect(await claim(c, 'w')).toEqual([]);
    expect(await job(a)).toMatchObject({
      status: 'cancelled',
      owner_instance_id: null,
      attempt_count: 0,
      claim_epoch: 0,
    });
  });

  it('claims up to max_jobs in one call, oldest first (extension)', async () => {
    const c = cap();
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await submit(c));
    const res = await r.call('POST', '/jobs/claim', { capability: c, instance_id: 'w', max_jobs: 3 });
    expect(res.body.claimed.map((j: { id: string }) => j.id)).toEqual(ids.slice(0, 3));
    expect(res.body.claimed.every((j: { claim_epoch: number }) => j.claim_epoch === 1)).toBe(true);
    const rest = await r.call('POST', '/jobs/claim', { capability: c, instance_id: 'w', max_jobs: 100 });
    expect(rest.body.claimed.map((j: { id: string }) => j.id)).toEqual(ids.slice(3));
    for (const bad of [0, 101, -1]) {
      const res400 = await r.call('POST', '/jobs/claim', { capability: c, instance_id: 'w', max_jobs: bad });
      expect(res400.status).toBe(400);
    }
  });
});

describe('release (reference transcript 04, §11 items 2 and 9)', () => {
  it('returns the job to the queue within budget, fails it past, refuses others', async () => {
    const c = cap();
    const id = await submit(c, { max_retries: 1 });
    await claim(c, 'w1');
    const notMine = await r.call('POST', `/jobs/${id}/release`, { instance_id: 'w2', reason: 'not mine' });
    expect(notMine.status).toBe(403);
    expect(notMine.body.error).toBe('caller is not the current owner of this job');
    const noInstance = await r.call('POST', `/jobs/${id}/release`, { reason: 'x' });
    expect(noInstance.status).toBe(400);
    expect(noInstance.body.error).toBe('instance_id is required');
    const ok = await r.call('POST', `/jobs/${id}/release`, {
      instance_id: 'w1',
      reason: 'OSError: connection refused',
    });
    expect(ok.body).toEqual({ status: 'working', attempt_count: 1 });
    expect(await job(id)).toMatchObject({
      owner_instance_id: null,
      lease_expires_at: null,
      status: 'working',
    });
    expect((await claim(c, 'w2'))[0]).toMatchObject({ id, attempt_count: 2, claim_epoch: 2 });
    const last = await r.call('POST', `/jobs/${id}/release`, { instance_id: 'w2', reason: 'OSError: again' });
    expect(last.body).toEqual({ status: 'failed', attempt_count: 2 });
    expect(await job(id)).toMatchObject({ status: 'failed', error: 'exhausted (release): OSError: again' });
    const again = await r.call('POST', `/jobs/${id}/release`, { instance_id: 'w2' });
    expect(again.status).toBe(409);
    expect(again.body.error).toBe('job is already in a terminal state');
    const missing = await r.call('POST', '/jobs/00000000-0000-0000-0000-000000000000/release', {
      instance_id: 'w2',
    });
    expect(missing.status).toBe(404);
  });

  it('is fenced by claim_epoch: a superseded execution cannot release the live one (§11 item 2)', async () => {
    const c = cap();
    const id = await submit(c, { max_retries: 3 });
    await claim(c, 'w1');
    await r.call('POST', `/jobs/${id}/reclaim`);
    await claim(c, 'w1'); // same instance, epoch 2
    const stale = await r.call('POST', `/jobs/${id}/release`, {
      instance_id: 'w1',
      claim_epoch: 1,
      reason: 'retry_on',
    });
    expect(stale.status).toBe(409);
    expect(stale.body.error).toBe('claim_superseded');
    expect(await job(id)).toMatchObject({ owner_instance_id: 'w1', claim_epoch: 2 });
    const live = await r.call('POST', `/jobs/${id}/release`, { instance_id: 'w1', claim_epoch: 2 });
    expect(live.body).toEqual({ status: 'working', attempt_count: 2 });
  });

  it('puts a released input_required job back in the queue as working (§11 item 9)', async () => {
    const c = cap();
    const id = await submit(c);
    await claim(c, 'w1');
    await delta('w1', { id, claim_epoch: 1, status: 'input_required', progress_message: 'Approve?' });
    await r.call('POST', `/jobs/${id}/release`, { instance_id: 'w1', claim_epoch: 1 });
    expect(await job(id)).toMatchObject({ status: 'working', owner_instance_id: null });
    expect((await claim(c, 'w2'))[0]?.id).toBe(id);
  });
});

describe('requiring claim epochs once every agent is upgraded (§11 item 14)', () => {
  it('refuses epoch-less deltas and releases, still accepts fenced ones', async () => {
    const strict = await startTestRegistry(db.url, { jobs: { requireClaimEpoch: true } });
    try {
      const c = cap();
      const id = (
        await strict.call('POST', '/jobs', { capability: c, submitted_by: 's', submitted_payload: {} })
      ).body.id;
      await strict.call('POST', '/jobs/claim', { capability: c, instance_id: 'w' });
      const legacy = await strict.call('POST', '/jobs/batch', {
        instance_id: 'w',
        deltas: [{ id, progress: 0.1 }],
      });
      expect(legacy.body).toEqual({ accepted: 0, rejected: [{ id, reason: 'epoch_required' }] });
      const release = await strict.call('POST', `/jobs/${id}/release`, { instance_id: 'w' });
      expect(release.status).toBe(400);
      expect(release.body.code).toBe('epoch_required');
      const fenced = await strict.call('POST', '/jobs/batch', {
        instance_id: 'w',
        deltas: [{ id, claim_epoch: 1, status: 'completed', result: {} }],
      });
      expect(fenced.body).toEqual({ accepted: 1, rejected: [] });
    } finally {
      await strict.close();
    }
  });
});

describe('lease renewal in bulk (POST /jobs/leases, extension)', () => {
  it('renews the live pairs and says why the others were not', async () => {
    const c = cap();
    const [a, b, d, e] = [await submit(c), await submit(c), await submit(c), await submit(c)];
    await r.call('POST', '/jobs/claim', { capability: c, instance_id: 'w', max_jobs: 4 });
    await r.sql`update jobs set lease_expires_at = now() + interval '2 seconds' where capability = ${c}`;
    await r.call('POST', `/jobs/${b}/cancel`);
    await delta('w', { id: d, claim_epoch: 1, status: 'completed', result: 1 });
    const res = await r.call('POST', '/jobs/leases', {
      instance_id: 'w',
      leases: [
        { id: a, claim_epoch: 1 },
        { id: b, claim_epoch: 1 },
        { id: d, claim_epoch: 1 },
        { id: e, claim_epoch: 9 },
        { id: '00000000-0000-0000-0000-000000000000', claim_epoch: 1 },
        { id: 'nope', claim_epoch: 1 },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.body.results.map((x: { outcome: string }) => x.outcome)).toEqual([
      'renewed',
      'cancelled',
      'terminal',
      'superseded',
      'not_found',
      'not_found',
    ]);
    expect(res.body.results[0].lease_expires_at - Math.floor(Date.now() / 1000)).toBeGreaterThanOrEqual(298);
  });

  it('tells a superseded owner it was superseded, even once the new owner finished the job', async () => {
    const c = cap();
    const id = await submit(c);
    await claim(c, 'old');
    await r.call('POST', `/jobs/${id}/reclaim`);
    expect((await claim(c, 'new'))[0]).toMatchObject({ id, claim_epoch: 2 });
    await delta('new', { id, claim_epoch: 2, status: 'completed', result: { by: 'new' } });
    const res = await r.call('POST', '/jobs/leases', {
      instance_id: 'old',
      leases: [{ id, claim_epoch: 1 }],
    });
    // The same answer a fenced delta gets (3.7: claim_superseded before already_terminal).
    expect(res.body.results).toEqual([
      { id, outcome: 'superseded', status: 'completed', lease_expires_at: null },
    ]);
    expect((await delta('old', { id, claim_epoch: 1, progress: 0.5 })).rejected).toEqual([
      { id, reason: 'claim_superseded' },
    ]);
  });
});

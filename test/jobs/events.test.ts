import { describe, expect, it } from 'vitest';
import { useTestRegistry } from '../support/registry-app.ts';

const r = useTestRegistry();

let n = 0;
const cap = () => `ev-${++n}`;
/** A claimed job: its id and the capability. */
async function running(extra: Record<string, unknown> = {}) {
  const c = cap();
  const id = (
    await r.call('POST', '/jobs', { capability: c, submitted_by: 's', submitted_payload: {}, ...extra })
  ).body.id as string;
  await r.call('POST', '/jobs/claim', { capability: c, instance_id: 'w1' });
  return id;
}
const post = (id: string, body: unknown) => r.call('POST', `/jobs/${id}/events`, body);
const read = (id: string, query = '') => r.call('GET', `/jobs/${id}/events${query ? `?${query}` : ''}`);

describe('job events (reference transcript 05)', () => {
  it('appends events with dense seqs and serves them with filters, cursors and limits', async () => {
    const id = await running();
    await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [
        { id, claim_epoch: 1, status: 'input_required', progress_message: 'Approve $42? Reply yes/no.' },
      ],
    });
    expect((await r.call('GET', `/jobs/${id}`)).body).toMatchObject({
      status: 'input_required',
      progress_message: 'Approve $42? Reply yes/no.',
    });
    const first = await post(id, { type: 'answer', payload: { approved: true } });
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ job_id: id, seq: 1, created_at: expect.any(Number) });
    expect(
      (
        await post(id, {
          type: 'note',
          payload: 'a bare string payload',
          trace_context: { traceparent: 'x' },
        })
      ).body.seq,
    ).toBe(2);
    expect((await post(id, { type: 'empty' })).body.seq).toBe(3);
    for (const bad of [{ type: '  ' }, { payload: {} }]) {
      const res = await post(id, bad);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('type is required');
    }
    expect((await post('00000000-0000-0000-0000-000000000000', { type: 'answer' })).status).toBe(404);

    const all = await read(id);
    expect(all.body).toEqual({
      events: [
        {
          job_id: id,
          seq: 1,
          type: 'answer',
          payload: { approved: true },
          trace_context: null,
          posted_by: null,
          created_at: expect.any(Number),
        },
        {
          job_id: id,
          seq: 2,
          type: 'note',
          payload: 'a bare string payload',
          trace_context: { traceparent: 'x' },
          posted_by: null,
          created_at: expect.any(Number),
        },
        {
          job_id: id,
          seq: 3,
          type: 'empty',
          payload: null,
          trace_context: null,
          posted_by: null,
          created_at: expect.any(Number),
        },
      ],
      next_after: 3,
    });
    expect(
      (await read(id, 'after=1&types=answer,empty')).body.events.map((e: { seq: number }) => e.seq),
    ).toEqual([3]);
    expect((await read(id, 'after=0&limit=1')).body).toMatchObject({ next_after: 1 });
    // next_after echoes `after` when nothing matched: it never jumps over unread events.
    expect((await read(id, 'after=3&types=answer')).body).toEqual({ events: [], next_after: 3 });
    expect((await read(id, 'instance_id=w1&claim_epoch=1&after=1')).body.next_after).toBe(3);
  });

  it('gives concurrent posts distinct, dense seqs', async () => {
    const id = await running();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => post(id, { type: 't', payload: i })),
    );
    expect(results.map((x) => x.body.seq).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('long-polls: times out with no events, wakes when an event arrives', async () => {
    const id = await running();
    let started = Date.now();
    const empty = await read(id, 'wait=1');
    expect(empty.body).toEqual({ events: [], next_after: 0 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    started = Date.now();
    const waiting = read(id, 'wait=10&types=answer');
    await new Promise((res) => setTimeout(res, 200));
    await post(id, { type: 'noise' });
    await post(id, { type: 'answer', payload: { approved: false } });
    const woke = await waiting;
    expect(woke.body.events.map((e: { type: string }) => e.type)).toEqual(['answer']);
    expect(woke.body.next_after).toBe(2);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('wakes a parked executor at once when the job is cancelled, with the cancelled event (§11 item 8)', async () => {
    const id = await running();
    const started = Date.now();
    const parked = read(id, 'instance_id=w1&claim_epoch=1&wait=30');
    await new Promise((res) => setTimeout(res, 200));
    const cancel = await r.call('POST', `/jobs/${id}/cancel`, { reason: 'user_requested' });
    expect(cancel.body).toEqual({ status: 'cancelled', forwarded_to_instance_id: 'w1' });
    const res = await parked;
    expect(res.status).toBe(200);
    expect(res.body.events).toEqual([
      expect.objectContaining({ seq: 1, type: 'cancelled', payload: { reason: 'user_requested' } }),
    ]);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('answers a parked executor with claim_superseded as soon as its job is reclaimed', async () => {
    const id = await running();
    const parked = read(id, 'instance_id=w1&claim_epoch=1&wait=30');
    await new Promise((res) => setTimeout(res, 200));
    const started = Date.now();
    await r.call('POST', `/jobs/${id}/reclaim`);
    const res = await parked;
    expect(res.status).toBe(409);
    expect(res.body.error).toBe('claim_superseded');
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('renews a parked executor lease during and at the end of the long-poll (§11 item 5)', async () => {
    const id = await running({ max_duration: 3 });
    // The lease is 3 s; a 5 s poll must not let it lapse.
    const parked = read(id, 'instance_id=w1&claim_epoch=1&wait=5');
    await new Promise((res) => setTimeout(res, 3_500));
    const mid = (await r.call('GET', `/jobs/${id}`)).body;
    expect(mid.lease_expires_at).toBeGreaterThan(Math.floor(Date.now() / 1000));
    expect((await r.sweeper.expireLeases()).requeued).toBe(0);
    await parked;
    const end = (await r.call('GET', `/jobs/${id}`)).body;
    expect(end.lease_expires_at).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000) + 2);
    expect(end.owner_instance_id).toBe('w1');
  });

  it('refuses posts to a terminal job but still serves its events, unfenced', async () => {
    const id = await running();
    await post(id, { type: 'answer' });
    await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id, claim_epoch: 1, status: 'completed', result: { status: 'approved' } }],
    });
    const refused = await post(id, { type: 'answer' });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toBe('job is already in a terminal state');
    expect((await read(id)).body.events).toHaveLength(1);
    expect((await read(id, 'instance_id=someone-else&claim_epoch=99&after=1')).body).toEqual({
      events: [],
      next_after: 1,
    });
  });

  it('merges recv_cursor per key, never regressing, and keeps it across a reclaim', async () => {
    const id = await running();
    const cursorDelta = (cursor: Record<string, number>, epoch = 1) =>
      r.call('POST', '/jobs/batch', {
        instance_id: 'w1',
        deltas: [{ id, claim_epoch: epoch, recv_cursor: cursor }],
      });
    await cursorDelta({ '': 5, A: 10, B: 2 });
    await cursorDelta({ '': 3, A: 12, C: 7 });
    expect((await r.call('GET', `/jobs/${id}`)).body.recv_cursor).toEqual({ '': 5, A: 12, B: 2, C: 7 });
    // A stale epoch never advances it.
    await cursorDelta({ '': 99 }, 0);
    expect((await r.call('GET', `/jobs/${id}`)).body.recv_cursor['']).toBe(5);
    await r.call('POST', `/jobs/${id}/reclaim`);
    const c = (await r.call('GET', `/jobs/${id}`)).body.capability;
    const [again] = (await r.call('POST', '/jobs/claim', { capability: c, instance_id: 'w2' })).body.claimed;
    expect(again.recv_cursor).toEqual({ '': 5, A: 12, B: 2, C: 7 });
  });
});

describe('cancel (reference transcript 05, §11 item 7)', () => {
  it('cancels an owned job, keeps the owner, writes the event, and refuses a second cancel', async () => {
    const id = await running();
    const started = Date.now();
    const res = await r.call('POST', `/jobs/${id}/cancel`, { reason: 'user_requested' });
    // No grace sleep on the request path (MCP Mesh sleeps 200 ms; the bound leaves room for a loaded machine).
    expect(Date.now() - started).toBeLessThan(500);
    expect(res.body).toEqual({ status: 'cancelled', forwarded_to_instance_id: 'w1' });
    expect((await r.call('GET', `/jobs/${id}`)).body).toMatchObject({
      status: 'cancelled',
      error: 'cancelled: user_requested',
      owner_instance_id: 'w1',
    });
    const late = await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id, claim_epoch: 1, status: 'completed', result: {} }],
    });
    expect(late.body.rejected).toEqual([{ id, reason: 'already_terminal' }]);
    const twice = await r.call('POST', `/jobs/${id}/cancel`);
    expect(twice.status).toBe(409);
  });

  it('cancels a queued job without a body, writing an event with an empty reason', async () => {
    const c = cap();
    const id = (await r.call('POST', '/jobs', { capability: c, submitted_by: 's', submitted_payload: {} }))
      .body.id;
    const res = await r.call('POST', `/jobs/${id}/cancel`);
    expect(res.body).toEqual({ status: 'cancelled', forwarded_to_instance_id: null });
    expect((await r.call('GET', `/jobs/${id}`)).body).toMatchObject({ error: null, attempt_count: 0 });
    expect((await read(id)).body.events).toEqual([
      expect.objectContaining({ seq: 1, type: 'cancelled', payload: { reason: '' } }),
    ]);
    expect((await r.call('POST', '/jobs/00000000-0000-0000-0000-000000000000/cancel')).status).toBe(404);
    const badJson = await r.call('POST', `/jobs/${id}/cancel`, '{"reason":');
    expect(badJson.status).toBe(400);
    expect(badJson.body.error).toMatch(/^Invalid JSON payload: /);
  });

  it('never overwrites a completion that commits first, whatever the interleaving', async () => {
    // Race a completion against a cancel many times: exactly one wins, and the
    // row keeps the winner's state.
    for (let i = 0; i < 20; i++) {
      const id = await running();
      const [done, cancel] = await Promise.all([
        r.call('POST', '/jobs/batch', {
          instance_id: 'w1',
          deltas: [{ id, claim_epoch: 1, status: 'completed', result: i }],
        }),
        r.call('POST', `/jobs/${id}/cancel`, { reason: 'race' }),
      ]);
      const row = (await r.call('GET', `/jobs/${id}`)).body;
      if (done.body.accepted === 1) {
        expect(cancel.status).toBe(409);
        expect(row).toMatchObject({ status: 'completed', result: i, error: null });
      } else {
        expect(cancel.status).toBe(200);
        expect(row).toMatchObject({ status: 'cancelled', result: null });
      }
    }
  });
});

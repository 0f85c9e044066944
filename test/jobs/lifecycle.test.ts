import { describe, expect, it } from 'vitest';
import { useTestRegistry } from '../support/registry-app.ts';

const r = useTestRegistry();

const submit = async (extra: Record<string, unknown> = {}, capability = 'echo') => {
  const res = await r.call('POST', '/jobs', {
    capability,
    submitted_by: 'tester',
    submitted_payload: { n: 1 },
    ...extra,
  });
  expect(res.status).toBe(201);
  return res.body.id as string;
};

describe('job lifecycle (reference transcript 03)', () => {
  it('submit → read → claim → progress → complete, with the 3.7 shapes', async () => {
    const created = await r.call('POST', '/jobs', {
      capability: 'peer_echo',
      submitted_by: 'peer-submitter',
      submitted_payload: { args: { text: 'hello' } },
      unknown_field: 'ignored',
    });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ id: expect.any(String), owner_instance_id: null, status: 'working' });
    const id = created.body.id;

    const read = await r.call('GET', `/jobs/${id}`);
    expect(read.body).toEqual({
      attempt_count: 0,
      capability: 'peer_echo',
      claim_epoch: 0,
      error: null,
      id,
      last_heartbeat_at: null,
      lease_expires_at: null,
      max_duration: null,
      max_retries: 1,
      owner_instance_id: null,
      progress: null,
      progress_message: null,
      recv_cursor: null,
      result: null,
      status: 'working',
      submitted_at: expect.any(Number),
      submitted_by: 'peer-submitter',
      submitted_payload: { args: { text: 'hello' } },
      total_deadline: null,
    });

    const claim = await r.call('POST', '/jobs/claim', { capability: 'peer_echo', instance_id: 'w1' });
    expect(claim.status).toBe(200);
    expect(claim.body.claimed).toEqual([
      {
        id,
        attempt_count: 1,
        claim_epoch: 1,
        lease_expires_at: expect.any(Number),
        max_duration: null,
        recv_cursor: null,
        submitted_payload: { args: { text: 'hello' } },
        // Ours since 0.2.0, an extension a 3.7 client ignores (the rest is 3.7's shape).
        total_deadline: null,
      },
    ]);
    const lease = claim.body.claimed[0].lease_expires_at;
    expect(lease - read.body.submitted_at).toBeGreaterThanOrEqual(299);
    expect(lease - read.body.submitted_at).toBeLessThanOrEqual(302);

    expect(
      (await r.call('POST', '/jobs/claim', { capability: 'peer_echo', instance_id: 'w2' })).body,
    ).toEqual({
      claimed: [],
    });

    const progress = await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id, claim_epoch: 1, progress: 0.5, progress_message: 'halfway' }],
    });
    expect(progress.body).toEqual({ accepted: 1, rejected: [] });
    const done = await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [
        { id, claim_epoch: 1, status: 'completed', progress: 1, result: { content: [{ type: 'text' }] } },
      ],
    });
    expect(done.body).toEqual({ accepted: 1, rejected: [] });
    const after = (await r.call('GET', `/jobs/${id}`)).body;
    expect(after).toMatchObject({
      status: 'completed',
      progress: 1,
      progress_message: 'halfway',
      result: { content: [{ type: 'text' }] },
      owner_instance_id: 'w1',
      claim_epoch: 1,
    });
    const late = await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id, claim_epoch: 1, progress: 0.9 }],
    });
    expect(late.body).toEqual({ accepted: 0, rejected: [{ id, reason: 'already_terminal' }] });
  });

  it('ignores result on a failed delta and error on a completed one', async () => {
    const id = await submit();
    await r.call('POST', '/jobs/claim', { capability: 'echo', instance_id: 'w1' });
    await r.call('POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id, claim_epoch: 1, status: 'failed', error: 'boom', result: { ignored: true } }],
    });
    expect((await r.call('GET', `/jobs/${id}`)).body).toMatchObject({
      status: 'failed',
      error: 'boom',
      result: null,
    });
  });

  it('accepts any JSON value as a result (reference §11 item 10)', async () => {
    for (const result of [[1, 2, 3], 'text', 42, true]) {
      const id = await submit({}, 'anyresult');
      const [job] = (await r.call('POST', '/jobs/claim', { capability: 'anyresult', instance_id: 'w1' })).body
        .claimed;
      expect(job.id).toBe(id);
      const res = await r.call('POST', '/jobs/batch', {
        instance_id: 'w1',
        deltas: [{ id, claim_epoch: 1, status: 'completed', result }],
      });
      expect(res.body).toEqual({ accepted: 1, rejected: [] });
      expect((await r.call('GET', `/jobs/${id}`)).body.result).toEqual(result);
    }
  });

  it('applies a batch delta by delta, reporting unknown ids as not_found', async () => {
    const id = await submit({}, 'batchy');
    await r.call('POST', '/jobs/claim', { capability: 'batchy', instance_id: 'w2' });
    const res = await r.call('POST', '/jobs/batch', {
      instance_id: 'w2',
      deltas: [
        { id, claim_epoch: 1, progress: 0.1 },
        { id: '00000000-0000-0000-0000-000000000000', claim_epoch: 1, progress: 0.1 },
        { id: 'x', status: 'bogus' },
        { id, claim_epoch: 1, status: 'completed', result: { ok: 1 } },
      ],
    });
    expect(res.body).toEqual({
      accepted: 2,
      rejected: [
        { id: '00000000-0000-0000-0000-000000000000', reason: 'not_found' },
        { id: 'x', reason: 'not_found' },
      ],
    });
    expect((await r.call('GET', `/jobs/${id}`)).body).toMatchObject({
      status: 'completed',
      progress: 0.1,
      result: { ok: 1 },
    });
  });

  it('push mode: a job submitted with an owner is running at once, epoch 0, and counts as the first attempt', async () => {
    const res = await r.call('POST', '/jobs', {
      capability: 'push',
      submitted_by: 's',
      submitted_payload: {},
      owner_instance_id: 'pusher',
      max_retries: 0,
      max_duration: 120,
    });
    expect(res.body).toEqual({ id: expect.any(String), owner_instance_id: 'pusher', status: 'working' });
    const id = res.body.id;
    expect((await r.call('GET', `/jobs/${id}`)).body).toMatchObject({
      claim_epoch: 0,
      attempt_count: 1,
      lease_expires_at: null,
    });
    // Not claimable by anyone else.
    expect(
      (await r.call('POST', '/jobs/claim', { capability: 'push', instance_id: 'other' })).body.claimed,
    ).toEqual([]);
    const progress = await r.call('POST', '/jobs/batch', {
      instance_id: 'pusher',
      deltas: [{ id, claim_epoch: 0, progress: 0.3 }],
    });
    expect(progress.body.accepted).toBe(1);
    const job = (await r.call('GET', `/jobs/${id}`)).body;
    expect(job.lease_expires_at - job.last_heartbeat_at).toBeGreaterThanOrEqual(119);
    expect(
      (
        await r.call('POST', '/jobs/batch', {
          instance_id: 'pusher',
          deltas: [{ id, status: 'completed', result: {} }],
        })
      ).body,
    ).toEqual({ accepted: 1, rejected: [] });
    // Released (it failed to run) with max_retries 0: exhausted, not run twice (reference §11 item 15).
    const id2 = (
      await r.call('POST', '/jobs', {
        capability: 'push',
        submitted_by: 's',
        submitted_payload: {},
        owner_instance_id: 'pusher',
        max_retries: 0,
      })
    ).body.id;
    const released = await r.call('POST', `/jobs/${id2}/release`, {
      instance_id: 'pusher',
      reason: 'crashed',
    });
    expect(released.body).toEqual({ status: 'failed', attempt_count: 1 });
  });

  it('sets the lease from max_duration when given', async () => {
    const id = await submit({ max_duration: 45, max_retries: 3 }, 'leasy');
    const [job] = (await r.call('POST', '/jobs/claim', { capability: 'leasy', instance_id: 'w' })).body
      .claimed;
    const row = (await r.call('GET', `/jobs/${id}`)).body;
    expect(job.lease_expires_at - row.last_heartbeat_at).toBeGreaterThanOrEqual(44);
    expect(job.lease_expires_at - row.last_heartbeat_at).toBeLessThanOrEqual(46);
  });

  it('never leases past total_deadline', async () => {
    const deadline = Math.floor(Date.now() / 1000) + 30;
    await submit({ max_duration: 600, total_deadline: deadline }, 'capped');
    const [job] = (await r.call('POST', '/jobs/claim', { capability: 'capped', instance_id: 'w' })).body
      .claimed;
    expect(job.lease_expires_at).toBeLessThanOrEqual(deadline);
  });
});

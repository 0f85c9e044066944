import { describe, expect, it } from 'vitest';
import { startTestRegistry, useTestRegistry } from '../support/registry-app.ts';

const r = useTestRegistry();
const db = r.db;

const submit = (capability: string) =>
  r
    .call('POST', '/jobs', { capability, submitted_by: 's', submitted_payload: {} })
    .then((x) => x.body.id as string);

describe('drain is a barrier (reference §11 item 6)', () => {
  it('a claim in flight when drain is posted commits first and is counted; later claims get nothing', async () => {
    await submit('barrier');
    await submit('barrier');
    // Hold the next claim after it passed the gate, before its SQL runs.
    let release: () => void = () => {};
    let entered: () => void = () => {};
    const inside = new Promise<void>((res) => {
      entered = res;
    });
    r.gate.beforeClaim = () => {
      entered();
      return new Promise<void>((res) => {
        release = res;
      });
    };
    const claim = r.call('POST', '/jobs/claim', { capability: 'barrier', instance_id: 'racer' });
    await inside;
    r.gate.beforeClaim = undefined;

    let drainAnswered = false;
    const drain = r.call('POST', '/admin/drain').then((res) => {
      drainAnswered = true;
      return res;
    });
    // The drain must not answer while the claim can still commit.
    await new Promise((res) => setTimeout(res, 300));
    expect(drainAnswered).toBe(false);
    // A claim that arrives now is refused at once: no attempt burned.
    expect(
      (await r.call('POST', '/jobs/claim', { capability: 'barrier', instance_id: 'late' })).body,
    ).toEqual({
      claimed: [],
    });

    release();
    const claimed = await claim;
    expect(claimed.body.claimed).toHaveLength(1);
    const answered = await drain;
    expect(answered.status).toBe(200);
    expect(answered.body).toMatchObject({ draining: true, live_claims: 1, live_claims_this_replica: 1 });

    // Nothing else was claimed: the other job is untouched.
    const rows = await r.sql<{ attempt_count: number }[]>`
      select attempt_count from jobs where capability = 'barrier' order by submitted_at`;
    expect(rows.map((x) => x.attempt_count)).toEqual([1, 0]);
  });

  it('keeps deltas, events, renewals and submissions working while draining, and resumes dispatch', async () => {
    const status = await r.call('GET', '/admin/drain');
    expect(status.body).toMatchObject({ draining: true, replica_id: 'test', boot_id: expect.any(String) });
    expect(status.body.draining_since).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    // Idempotent; a body is ignored.
    expect((await r.call('POST', '/admin/drain', { anything: true })).body.draining).toBe(true);
    const [running] = await r.sql<{ id: string }[]>`select id from jobs where owner_instance_id = 'racer'`;
    const id = running?.id as string;
    expect(
      (
        await r.call('POST', '/jobs/batch', {
          instance_id: 'racer',
          deltas: [{ id, claim_epoch: 1, progress: 0.5 }],
        })
      ).body.accepted,
    ).toBe(1);
    expect((await r.call('GET', `/jobs/${id}/events?instance_id=racer&claim_epoch=1`)).status).toBe(200);
    const queued = await submit('barrier');
    expect(
      (await r.call('POST', '/jobs/claim', { capability: 'barrier', instance_id: 'w' })).body.claimed,
    ).toEqual([]);
    await r.call('POST', '/jobs/batch', {
      instance_id: 'racer',
      deltas: [{ id, claim_epoch: 1, status: 'completed', result: {} }],
    });
    expect((await r.call('GET', '/admin/drain')).body).toMatchObject({ draining: true, live_claims: 0 });

    const resumed = await r.call('DELETE', '/admin/drain');
    expect(resumed.body).toMatchObject({ draining: false, live_claims: 0, draining_since: null });
    // FIFO resumes: the older queued job first.
    const next = await r.call('POST', '/jobs/claim', {
      capability: 'barrier',
      instance_id: 'w',
      max_jobs: 5,
    });
    expect(next.body.claimed.map((j: { id: string }) => j.id)).toHaveLength(2);
    expect(next.body.claimed.at(-1).id).toBe(queued);
  });
});

describe('admin surface and token (reference §11 item 12)', () => {
  it('serves admin routes and force reclaim only on the admin surface when split', async () => {
    const tokenless = await startTestRegistry(db.url);
    try {
      const { app } = tokenless;
      const id = await tokenless
        .call('POST', '/jobs', { capability: 'surface', submitted_by: 's', submitted_payload: {} })
        .then((x) => x.body.id);
      expect((await app.request('/admin/drain')).status).toBe(200);
      const split = await startTestRegistry(db.url, { surface: 'main' });
      const adminOnly = await startTestRegistry(db.url, { surface: 'admin' });
      try {
        const mainDrain = await split.app.request('/admin/drain');
        expect(mainDrain.status).toBe(404);
        expect(await mainDrain.text()).toBe('404 page not found');
        expect((await split.app.request(`/jobs/${id}/reclaim`, { method: 'POST' })).status).toBe(404);
        expect((await split.app.request('/health')).status).toBe(200);
        expect((await adminOnly.app.request('/admin/drain')).status).toBe(200);
        expect((await adminOnly.app.request(`/jobs/${id}/reclaim`, { method: 'POST' })).status).toBe(200);
        // Like MCP Mesh's admin listener: no /health, no /jobs there.
        expect((await adminOnly.app.request('/health')).status).toBe(404);
        expect((await adminOnly.app.request('/jobs')).status).toBe(404);
      } finally {
        await split.close();
        await adminOnly.close();
      }
    } finally {
      await tokenless.close();
    }
  });

  it('requires the admin token on admin routes, force reclaim and GET /jobs when one is set', async () => {
    const guarded = await startTestRegistry(db.url, { adminToken: 's3cret-token' });
    try {
      const id = await guarded
        .call('POST', '/jobs', { capability: 'tok', submitted_by: 's', submitted_payload: {} })
        .then((x) => x.body.id);
      for (const [method, path] of [
        ['GET', '/admin/drain'],
        ['POST', '/admin/drain'],
        ['GET', '/admin/replicas'],
        ['POST', `/jobs/${id}/reclaim`],
        ['GET', '/jobs'],
      ] as const) {
        const none = await guarded.call(method, path);
        expect(none.status, `${method} ${path}`).toBe(401);
        expect(none.body).toMatchObject({ code: 'unauthorized' });
        const wrong = await guarded.call(method, path, undefined, { authorization: 'Bearer nope-nope' });
        expect(wrong.status).toBe(401);
      }
      const ok = { authorization: 'Bearer s3cret-token' };
      expect((await guarded.call('GET', '/admin/drain', undefined, ok)).status).toBe(200);
      expect((await guarded.call('GET', '/jobs', undefined, ok)).status).toBe(200);
      expect((await guarded.call('POST', `/jobs/${id}/reclaim`, undefined, ok)).status).toBe(200);
      expect((await guarded.call('DELETE', '/admin/drain', undefined, ok)).status).toBe(200);
      // Agent-facing routes stay open.
      expect((await guarded.call('GET', `/jobs/${id}`)).status).toBe(200);
      expect(
        (await guarded.call('POST', '/jobs/claim', { capability: 'tok', instance_id: 'w' })).status,
      ).toBe(200);
    } finally {
      await guarded.close();
    }
  });
});

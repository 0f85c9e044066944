import { features } from '@mesh/protocol';
import { Agent, RegistryClient } from '@mesh/sdk';
import { installedRelease, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { claim, longWait, submit, untilParked, useReplicaPair } from '../support/long-poll.ts';
import { until } from '../support/until.ts';

/**
 * Long-poll claims (`wait_ms` on POST /jobs/claim, feature `long-poll-claim`,
 * issue 17 item 1), against real registry processes over one real database:
 * a parked claim wakes when work for its capability is queued on any replica,
 * answers empty at the end of its wait, at once on drain and shutdown, and
 * leaves nothing behind when its client goes away. No test here waits for
 * anything but an answer or an invariant: a parked claim that answers with
 * the job long before its wait could end was woken.
 */
const db = useTestDatabase();
const fast = { MESH_REPLICA_HEARTBEAT: '200ms', MESH_SWEEP_INTERVAL: '200ms', MESH_OUTAGE_GRACE: '0' };
const replicas = useReplicaPair(db, 'lp', fast);
const { a, b, row, capability } = replicas;

describe('long-poll claims', () => {
  it('are advertised, and wait_ms is validated', async () => {
    expect((await call(a.url, 'GET', '/health')).body.features).toContain(features.longPollClaim);
    for (const wait_ms of [-1, 60_001, 1.5, 'soon']) {
      const res = await call(a.url, 'POST', '/jobs/claim', { capability: 'x', instance_id: 'w', wait_ms });
      expect(res.status).toBe(400);
      expect(res.body.error).toBeTruthy();
    }
    // 0 (and null, the 3.7 wire's absence) answer at once.
    for (const wait_ms of [0, null]) {
      const res = await claim(a, { capability: capability(), instance_id: 'w', wait_ms });
      expect(res.body).toEqual({ claimed: [] });
    }
  });

  it('claims at once when work is queued, like a plain claim', async () => {
    const cap = capability();
    const id = await submit(a, cap);
    const res = await claim(a, { capability: cap, instance_id: 'w', wait_ms: longWait });
    expect(res.body.claimed.map((j: { id: string }) => j.id)).toEqual([id]);
  });

  it('answers the usual empty answer when its wait ends with nothing queued', async () => {
    const res = await claim(a, { capability: capability(), instance_id: 'w', wait_ms: 300 });
    expect(res).toEqual({ status: 200, draining: null, body: { claimed: [] } });
  });

  it('wakes on a submission to the same replica and claims it', async () => {
    const cap = capability();
    const parkedClaim = claim(a, { capability: cap, instance_id: 'w-same', wait_ms: longWait });
    await untilParked(a, 1);
    const id = await submit(a, cap);
    const res = await parkedClaim;
    expect(res.body.claimed.map((j: { id: string }) => j.id)).toEqual([id]);
    expect(await row(id)).toMatchObject({ owner_instance_id: 'w-same', attempt_count: 1 });
    await untilParked(a, 0);
  }, 30_000);

  it('wakes on a submission to another replica, and on a release (retry) there', async () => {
    const cap = capability();
    const first = claim(a, { capability: cap, instance_id: 'w-cross', wait_ms: longWait });
    await untilParked(a, 1);
    const id = await submit(b, cap);
    const got = (await first).body.claimed[0];
    expect(got.id).toBe(id);
    // The owner gives it back on B (a retry): a claim parked on A gets it again.
    const again = claim(a, { capability: cap, instance_id: 'w-cross-2', wait_ms: longWait });
    await untilParked(a, 1);
    const released = await call(b.url, 'POST', `/jobs/${id}/release`, {
      instance_id: 'w-cross',
      claim_epoch: got.claim_epoch,
      reason: 'retry',
    });
    expect(released.body).toEqual({ status: 'working', attempt_count: 1 });
    expect((await again).body.claimed.map((j: { id: string }) => j.id)).toEqual([id]);
    expect(await row(id)).toMatchObject({ owner_instance_id: 'w-cross-2', attempt_count: 2 });
  }, 30_000);

  it('wakes when the lease sweep puts an expired job back in the queue', async () => {
    const cap = capability();
    const id = (
      await call(b.url, 'POST', '/jobs', {
        capability: cap,
        submitted_by: 't',
        submitted_payload: {},
        max_duration: 1,
        max_retries: 2,
      })
    ).body.id as string;
    expect((await claim(b, { capability: cap, instance_id: 'w-slow' })).body.claimed[0].id).toBe(id);
    // The owner goes silent: within about a second its lease expires, a sweep requeues the job.
    const next = claim(a, { capability: cap, instance_id: 'w-next', wait_ms: longWait });
    await untilParked(a, 1);
    expect((await next).body.claimed.map((j: { id: string }) => j.id)).toEqual([id]);
    expect(await row(id)).toMatchObject({ owner_instance_id: 'w-next', attempt_count: 2 });
  }, 30_000);

  it('wakes as many parked claims as jobs were queued, and every job is claimed once', async () => {
    const cap = capability();
    const waiters = Array.from({ length: 6 }, (_, i) =>
      claim(a, { capability: cap, instance_id: `w-many-${i}`, wait_ms: 3_000 }),
    );
    await untilParked(a, 6);
    const ids = [await submit(b, cap), await submit(a, cap), await submit(b, cap)];
    const answers = await Promise.all(waiters);
    const claimed = answers.flatMap((x) => x.body.claimed.map((j: { id: string }) => j.id));
    expect(claimed.sort()).toEqual([...ids].sort());
    for (const id of ids) expect((await row(id))?.attempt_count).toBe(1);
  }, 30_000);

  it('a client that disconnects while parked leaves nothing behind and claims nothing', async () => {
    const cap = capability();
    const gone = new AbortController();
    const abandoned = claim(a, { capability: cap, instance_id: 'w-gone', wait_ms: longWait }, gone.signal);
    await untilParked(a, 1);
    gone.abort();
    await expect(abandoned).rejects.toThrow();
    await untilParked(a, 0);
    // The next job goes to a claim still waiting, never to the client that left.
    const stays = claim(a, { capability: cap, instance_id: 'w-stays', wait_ms: longWait });
    await untilParked(a, 1);
    const id = await submit(b, cap);
    expect((await stays).body.claimed[0].id).toBe(id);
    expect(await row(id)).toMatchObject({ owner_instance_id: 'w-stays', attempt_count: 1 });
    const [gone_] = await replicas.sql`select 1 from jobs where owner_instance_id = 'w-gone'`;
    expect(gone_).toBeUndefined();
  }, 30_000);
});

describe('the SDK worker', () => {
  const runOne = async (urls: string[], cap: string, submitTo: string) => {
    const client = new RegistryClient({ urls });
    const agent = new Agent({ client, name: 'lp-agent', heartbeatIntervalMs: 200 });
    const handled: string[] = [];
    agent.worker({
      capability: cap,
      concurrency: 1,
      maxIdleMs: 200,
      handler: async ({ id }) => {
        handled.push(id);
        return { ok: true };
      },
    });
    await agent.start();
    try {
      const submitter = new RegistryClient({ urls: [submitTo] });
      const id = (await submitter.submit({ capability: cap, submitted_by: 't', submitted_payload: {} })).id;
      await until('the job handled', () => handled.includes(id));
      await until('the job completed', async () => (await row(id))?.status === 'completed');
      return id;
    } finally {
      await agent.stop();
    }
  };

  it('long-polls a registry that advertises it (parked while idle), and picks up work from another replica', async () => {
    const cap = capability();
    const client = new RegistryClient({ urls: [a.url] });
    const agent = new Agent({ client, name: 'lp-sdk', heartbeatIntervalMs: 200 });
    const handled: string[] = [];
    agent.worker({ capability: cap, concurrency: 2, handler: async ({ id }) => void handled.push(id) });
    await agent.start();
    try {
      await untilParked(a, 1);
      const ids = [await submit(b, cap), await submit(b, cap)];
      await until('both jobs handled', () => ids.every((id) => handled.includes(id)));
      await untilParked(a, 1); // idle again: parked, not polling
    } finally {
      await agent.stop();
    }
    // Stopping ends the parked claim (the worker does not wait for its wait).
    await untilParked(a, 0);
  }, 30_000);

  it('falls back to polling on a registry with the feature turned off', async () => {
    const off = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'lp-off',
      env: { ...fast, MESH_LONG_POLL_CLAIM: 'false' },
    });
    try {
      expect((await call(off.url, 'GET', '/health')).body.features).not.toContain(features.longPollClaim);
      // wait_ms is ignored there, as an older registry would: the claim answers at once.
      const res = await claim(off, { capability: capability(), instance_id: 'w', wait_ms: longWait });
      expect(res.body).toEqual({ claimed: [] });
      await runOne([off.url], capability(), off.url);
    } finally {
      await off.stop();
    }
  }, 60_000);

  it('falls back to polling on the 0.1.0 release', async () => {
    const old = await spawnRegistry({
      bin: (await installedRelease('0.1.0')).registryBin,
      databaseUrl: db.url,
      replicaId: 'lp-010',
    });
    try {
      expect((await call(old.url, 'GET', '/health')).body.features).not.toContain(features.longPollClaim);
      await runOne([old.url], capability(), old.url);
    } finally {
      await old.stop();
    }
  }, 120_000);
});

describe('a mixed fleet with a 0.1.0 replica (a rolling upgrade)', () => {
  it('a claim parked on a newer replica still gets a job submitted through the 0.1.0 one, which does not notify', async () => {
    const old = await spawnRegistry({
      bin: (await installedRelease('0.1.0')).registryBin,
      databaseUrl: db.url,
      replicaId: 'lp-010-mixed',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    });
    try {
      const cap = capability();
      // A's background fleet read (the one that counts replicas not notifying) has seen it.
      await until('A sees three live replicas', async () =>
        /^mesh_replicas\{state="live"\} 3$/m.test(await (await fetch(`${a.url}/metrics`)).text()),
      );
      const parkedClaim = claim(a, { capability: cap, instance_id: 'w-mixed', wait_ms: longWait });
      await untilParked(a, 1);
      const id = await submit(old, cap);
      expect((await parkedClaim).body.claimed.map((j: { id: string }) => j.id)).toEqual([id]);
    } finally {
      await old.stop();
    }
  }, 60_000);
});

import { RegistryClient } from '@mesh/sdk';
import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { killAgents, spawnAgent } from './agent-process.ts';
import { until } from './targets.ts';

/**
 * Superseded owner, with real processes (issue #4, DESIGN.md §1 "leases and
 * claim epochs"): an agent process working silently is paused (SIGSTOP) past
 * its lease, another agent process claims and completes the job, the first is
 * resumed (SIGCONT). Its writes are refused, its handler's AbortSignal fires,
 * and the job completed exactly once.
 */
const db = useTestDatabase();

let registry: RegistryProcess | undefined;
afterEach(killAgents);
afterAll(async () => {
  killAgents();
  await registry?.stop();
});

describe('a superseded owner, with real processes', () => {
  it('refuses the writes of an agent paused past its lease, aborts its handler, and completes the job once', async () => {
    registry = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'fence',
      env: {
        MESH_SWEEP_INTERVAL: '200ms',
        MESH_HEALTH_CHECK_INTERVAL: '200ms',
        MESH_AGENT_TIMEOUT: '3s',
        // A fresh registry would otherwise grant a post-outage grace and sweep nothing for 60 s.
        MESH_OUTAGE_GRACE: '0',
      },
    });
    const client = new RegistryClient({ urls: [registry.url] });
    const capability = 'fenced-slow-work';
    const common = { MESH_REGISTRY_URL: registry.url, CAPABILITY: capability, HEARTBEAT_MS: '200' };

    const a = spawnAgent({ ...common, AGENT_NAME: 'slow-a', WORK_MS: '600000' });
    const aId = (await a.waitFor('agent A to be ready', (r) => r.event === 'ready')).agent as string;
    const { id } = await client.submit({
      capability,
      submitted_by: 'test',
      submitted_payload: {},
      max_duration: 2, // a 2 s lease
      max_retries: 1,
    });
    expect(await a.waitFor('A to start the job', (r) => r.event === 'started' && r.job === id)).toMatchObject(
      {
        epoch: 1,
        attempt: 1,
      },
    );
    const claimed = await client.getJob(id);
    expect(claimed).toMatchObject({ owner_instance_id: aId, claim_epoch: 1, status: 'working' });

    // Working silently, A keeps its lease alive: renewed up to its first expiry and beyond, still A's.
    await until('A to renew its lease past the first window', async () => {
      const j = await client.getJob(id);
      expect(j).toMatchObject({ owner_instance_id: aId, claim_epoch: 1, status: 'working' });
      return (j.lease_expires_at ?? 0) >= (claimed.lease_expires_at ?? 0) + 2;
    });

    // A freezes past its lease; B comes up, claims the job and completes it.
    process.kill(a.pid, 'SIGSTOP');
    const b = spawnAgent({ ...common, AGENT_NAME: 'fast-b', WORK_MS: '0' });
    const bId = (await b.waitFor('agent B to be ready', (r) => r.event === 'ready')).agent as string;
    const done = await until(
      'B to complete the job',
      async () => {
        const j = await client.getJob(id);
        return j.status === 'completed' ? j : undefined;
      },
      30_000,
    );
    expect(done).toMatchObject({
      owner_instance_id: bId,
      claim_epoch: 2,
      attempt_count: 2,
      result: { by: bId, epoch: 2 },
    });

    // A thaws. Its first contact with the registry about the job is refused, and its handler is aborted.
    process.kill(a.pid, 'SIGCONT');
    expect(await a.waitFor('A to be aborted', (r) => r.event === 'abort' && r.job === id)).toMatchObject({
      epoch: 1,
      reason: 'claim_superseded',
    });
    expect(
      await a.waitFor(
        'a refused write',
        (r) => r.event === 'notice' && r.type === 'refused' && r.jobId === id,
      ),
    ).toMatchObject({ claimEpoch: 1, reason: 'claim_superseded' });
    // Its handler finished its work: the SDK sent none of its writes, and a forced stale completion is fenced.
    expect(
      await a.waitFor('A to finish its work', (r) => r.event === 'work-done' && r.job === id),
    ).toMatchObject({
      aborted: true,
      progressed: false,
      eventSent: false,
    });
    expect(
      await a.waitFor('the stale write', (r) => r.event === 'stale-write' && r.job === id),
    ).toMatchObject({
      accepted: 0,
      rejected: ['claim_superseded'],
    });
    expect(
      await a.waitFor(
        'A to settle the job',
        (r) => r.event === 'notice' && r.type === 'settled' && r.jobId === id,
      ),
    ).toMatchObject({ outcome: 'abandoned', committed: false });

    // Completed exactly once: B's one committed completion, the row as B left it, nothing of A's after epoch 1.
    const settledByB = b.records.filter(
      (r) => r.event === 'notice' && r.type === 'settled' && r.jobId === id,
    );
    expect(settledByB).toEqual([
      expect.objectContaining({ outcome: 'completed', committed: true, claimEpoch: 2 }),
    ]);
    expect(await client.getJob(id)).toMatchObject({
      status: 'completed',
      owner_instance_id: bId,
      claim_epoch: 2,
      attempt_count: 2,
      progress: 1,
      result: { by: bId, epoch: 2 },
    });
    const log = await client.readEvents(id);
    expect(log.events.map((e) => [e.type, e.payload])).toEqual([
      ['attempt', { by: aId, epoch: 1 }],
      ['attempt', { by: bId, epoch: 2 }],
      ['finished', { by: bId }],
    ]);
  }, 90_000);
});

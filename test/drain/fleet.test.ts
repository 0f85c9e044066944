import { readBundledMigrations } from '@mesh/db';
import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';

const db = useTestDatabase();

const claim = (r: RegistryProcess, instance = 'w') =>
  call(r.url, 'POST', '/jobs/claim', { capability: 'stream', instance_id: instance }).then(
    (x) => x.body.claimed as { id: string; claim_epoch: number }[],
  );
async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((res) => setTimeout(res, 50));
  }
}
const replica = (id: string) =>
  spawnRegistry({ databaseUrl: db.url, replicaId: id, env: { MESH_REPLICA_HEARTBEAT: '200ms' } });

describe('three replicas on one database (real processes)', () => {
  it('drains one replica alone, then the whole fleet (including a replica restarted mid-drain), then resumes', async () => {
    let [r1, r2, r3] = (await Promise.all([replica('r1'), replica('r2'), replica('r3')])) as [
      RegistryProcess,
      RegistryProcess,
      RegistryProcess,
    ];
    for (let i = 0; i < 40; i++) {
      await call(r1.url, 'POST', '/jobs', {
        capability: 'stream',
        submitted_by: 's',
        submitted_payload: { i },
      });
    }
    const listed = await call(r2.url, 'GET', '/admin/replicas');
    expect(
      listed.body.replicas.map((r: { replica_id: string; live: boolean }) => [r.replica_id, r.live]),
    ).toEqual([
      ['r1', true],
      ['r2', true],
      ['r3', true],
    ]);
    expect(listed.body.replicas[0]).toMatchObject({
      main_url: r1.url,
      version: expect.any(String),
      schema_version: readBundledMigrations().length,
    });

    // Per-replica drain (3.7 semantics): only r1 stops handing out claims.
    const held = await claim(r2, 'holder');
    expect(held).toHaveLength(1);
    const drained = await call(r1.url, 'POST', '/admin/drain');
    expect(drained.body).toMatchObject({
      draining: true,
      live_claims: 1,
      live_claims_this_replica: 0,
      replica_id: 'r1',
    });
    expect(await claim(r1)).toEqual([]);
    expect(await claim(r2)).toHaveLength(1);
    expect(await claim(r3)).toHaveLength(1);

    // Fleet drain: one call, every live replica acknowledges before it answers.
    const fleet = await call(r2.url, 'POST', '/admin/fleet/drain');
    expect(fleet.status).toBe(200);
    expect(fleet.body).toMatchObject({ fleet_draining: true, acknowledged: true, pending: [] });
    for (const r of [r1, r2, r3]) expect(await claim(r)).toEqual([]);
    for (const r of [r2, r3])
      expect((await call(r.url, 'GET', '/admin/drain')).body).toMatchObject({
        draining: true,
        fleet_draining: true,
      });

    // A replica restarted during the fleet drain comes up draining.
    const oldBoot = (await call(r3.url, 'GET', '/admin/drain')).body.boot_id;
    expect(await r3.stop()).toEqual({ code: 0, signal: null });
    r3 = await replica('r3');
    const back = (await call(r3.url, 'GET', '/admin/drain')).body;
    expect(back).toMatchObject({ draining: true, fleet_draining: true });
    expect(back.boot_id).not.toBe(oldBoot);
    expect(await claim(r3)).toEqual([]);

    // With the fleet drained, once live_claims reads 0 no claim can commit anywhere.
    const live = (await call(r1.url, 'GET', '/admin/drain')).body.live_claims;
    expect(live).toBe(3);
    const mine = await call(r1.url, 'GET', '/jobs?owner_instance_id=holder');
    const byOwner = await call(r1.url, 'GET', '/jobs?status=working&limit=200');
    for (const j of byOwner.body.jobs.filter(
      (x: { owner_instance_id: string | null }) => x.owner_instance_id,
    )) {
      await call(r2.url, 'POST', '/jobs/batch', {
        instance_id: j.owner_instance_id,
        deltas: [{ id: j.id, claim_epoch: j.claim_epoch, status: 'completed', result: {} }],
      });
    }
    expect(mine.body.jobs).toHaveLength(1);
    expect((await call(r3.url, 'GET', '/admin/drain')).body.live_claims).toBe(0);
    for (const r of [r1, r2, r3]) expect(await claim(r)).toEqual([]);
    expect((await call(r3.url, 'GET', '/admin/drain')).body.live_claims).toBe(0);

    // Lift the fleet drain: r2 and r3 dispatch again; r1 keeps its own drain until resumed.
    const lifted = await call(r3.url, 'DELETE', '/admin/fleet/drain');
    expect(lifted.body).toMatchObject({ fleet_draining: false });
    // r2 learns it at its next replica heartbeat (200 ms here).
    await until(async () => (await call(r2.url, 'GET', '/admin/drain')).body.draining === false);
    expect(await claim(r2)).toHaveLength(1);
    expect(await claim(r3)).toHaveLength(1);
    expect(await claim(r1)).toEqual([]);
    expect((await call(r1.url, 'DELETE', '/admin/drain')).body).toMatchObject({ draining: false });
    expect(await claim(r1)).toHaveLength(1);

    // A stopped replica is listed as stopped, not live.
    await r2.stop();
    const after = await call(r1.url, 'GET', '/admin/replicas');
    const r2row = after.body.replicas.find((r: { replica_id: string }) => r.replica_id === 'r2');
    expect(r2row).toMatchObject({ live: false, stale: false, stopped_at: expect.any(String) });
    // A killed replica (no clean stop) turns stale after three missed heartbeats.
    await r3.kill();
    await until(async () => {
      const rows = (await call(r1.url, 'GET', '/admin/replicas')).body.replicas;
      return rows.find((r: { replica_id: string }) => r.replica_id === 'r3')?.stale === true;
    });
    const r3row = (await call(r1.url, 'GET', '/admin/replicas')).body.replicas.find(
      (r: { replica_id: string }) => r.replica_id === 'r3',
    );
    expect(r3row).toMatchObject({ live: false, stale: true, stopped_at: null });

    // A gone replica can be forgotten; a live one cannot, an unknown one is 404.
    const forgotten = await call(r1.url, 'DELETE', '/admin/replicas/r3');
    expect(forgotten).toMatchObject({ status: 200, body: { replica_id: 'r3', forgotten: true } });
    expect(await call(r1.url, 'DELETE', '/admin/replicas/r1')).toMatchObject({
      status: 409,
      body: { code: 'conflict' },
    });
    expect((await call(r1.url, 'DELETE', '/admin/replicas/r3')).status).toBe(404);
    const ids = (await call(r1.url, 'GET', '/admin/replicas')).body.replicas.map(
      (r: { replica_id: string }) => r.replica_id,
    );
    expect(ids).toEqual(['r1', 'r2']);
  }, 120_000);
});

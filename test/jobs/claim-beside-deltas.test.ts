import { features, headers } from '@mesh/protocol';
import { installedRelease, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';

/**
 * A claim beside deltas (`claim` on POST /jobs/batch, feature
 * `claim-beside-deltas`, issue 17 item 3): one exchange carries a worker's
 * outcomes and its next claim. Against a real registry process and database:
 * the claim is a claim like POST /jobs/claim (oldest first, epoch and attempt
 * counted, max_jobs honoured, the drain barrier), the deltas are answered as
 * without it (each fenced on its own), a bad claim refuses the whole request
 * before anything runs, and a registry with the feature off ignores it.
 */
const db = useTestDatabase();
let r: RegistryProcess;
let sql: postgres.Sql;
let n = 0;
const capability = () => `beside-${++n}`;

beforeAll(async () => {
  r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'beside' });
  sql = postgres(db.url, { max: 1, onnotice: () => {} });
});
afterAll(async () => {
  await sql?.end();
  await r?.stop();
});

async function submit(cap: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await call(r.url, 'POST', '/jobs', {
      capability: cap,
      submitted_by: 't',
      submitted_payload: { i },
    });
    expect(res.status).toBe(201);
    ids.push(res.body.job_id ?? res.body.id);
  }
  return ids;
}

async function claimOne(cap: string, instance: string) {
  const res = await call(r.url, 'POST', '/jobs/claim', { capability: cap, instance_id: instance });
  const [job] = res.body.claimed as { id: string; claim_epoch: number }[];
  if (!job) throw new Error('nothing claimed');
  return job;
}

const completed = (job: { id: string; claim_epoch: number }) => ({
  id: job.id,
  claim_epoch: job.claim_epoch,
  status: 'completed',
  result: { ok: true },
});

const row = async (id: string) =>
  (
    await sql`select status, owner_instance_id, claim_epoch::int as epoch, attempt_count, lease_expires_at is not null as leased
              from jobs where id = ${id}`
  )[0];

describe('claim beside deltas', () => {
  it('completes the held job and claims the next ones, oldest first, in one exchange', async () => {
    expect((await call(r.url, 'GET', '/health')).body.features).toContain(features.claimBesideDeltas);
    const cap = capability();
    const ids = await submit(cap, 4);
    const held = await claimOne(cap, 'w1');
    expect(held.id).toBe(ids[0]);
    const res = await call(r.url, 'POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [completed(held)],
      claim: { capability: cap, max_jobs: 2 },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ accepted: 1, rejected: [] });
    expect(res.body.claimed.map((j: { id: string }) => j.id)).toEqual([ids[1], ids[2]]);
    expect(res.body.claimed[0]).toMatchObject({
      attempt_count: 1,
      claim_epoch: 1,
      submitted_payload: { i: 1 },
    });
    expect(await row(held.id)).toMatchObject({ status: 'completed', owner_instance_id: 'w1' });
    for (const id of [ids[1], ids[2]] as string[])
      expect(await row(id)).toMatchObject({
        status: 'working',
        owner_instance_id: 'w1',
        epoch: 1,
        attempt_count: 1,
        leased: true,
      });
    expect(await row(ids[3] as string)).toMatchObject({
      owner_instance_id: null,
      epoch: 0,
      attempt_count: 0,
    });
    // Without max_jobs, one; with nothing left, an empty claimed.
    const next = await call(r.url, 'POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: res.body.claimed.map(completed),
      claim: { capability: cap },
    });
    expect(next.body).toMatchObject({ accepted: 2, rejected: [] });
    expect(next.body.claimed.map((j: { id: string }) => j.id)).toEqual([ids[3]]);
    const last = await call(r.url, 'POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: next.body.claimed.map(completed),
      claim: { capability: cap },
    });
    expect(last.body).toEqual({ accepted: 1, rejected: [], claimed: [] });
    const [left] =
      await sql`select count(*)::int as n from jobs where capability = ${cap} and status <> 'completed'`;
    expect(left?.n).toBe(0);
  });

  it('answers each delta on its own: a fenced-out one is refused and the claim still claims', async () => {
    const cap = capability();
    const [first, second] = await submit(cap, 2);
    const held = await claimOne(cap, 'w2');
    expect(held.id).toBe(first);
    const res = await call(r.url, 'POST', '/jobs/batch', {
      instance_id: 'w2',
      deltas: [{ ...completed(held), claim_epoch: held.claim_epoch + 1 }],
      claim: { capability: cap },
    });
    expect(res.body.accepted).toBe(0);
    expect(res.body.rejected).toEqual([{ id: first, reason: 'claim_superseded' }]);
    expect(res.body.claimed.map((j: { id: string }) => j.id)).toEqual([second]);
    expect(await row(first as string)).toMatchObject({
      status: 'working',
      owner_instance_id: 'w2',
      epoch: 1,
    });
  });

  it('refuses a bad claim before anything runs: the deltas are not applied', async () => {
    const cap = capability();
    await submit(cap, 2);
    const held = await claimOne(cap, 'w3');
    for (const claim of [
      {},
      { capability: '' },
      { capability: cap, max_jobs: 0 },
      { capability: cap, max_jobs: 10_000 },
      { capability: cap, max_jobs: 1.5 },
    ]) {
      const res = await call(r.url, 'POST', '/jobs/batch', {
        instance_id: 'w3',
        deltas: [completed(held)],
        claim,
      });
      expect(res.status, JSON.stringify(claim)).toBe(400);
      expect(res.body.error).toBeTruthy();
    }
    expect(await row(held.id)).toMatchObject({ status: 'working', owner_instance_id: 'w3' });
    const [queued] =
      await sql`select count(*)::int as n from jobs where capability = ${cap} and owner_instance_id is null`;
    expect(queued?.n).toBe(1);
  });

  it('claims nothing on a draining replica, says so, and still applies the deltas', async () => {
    const cap = capability();
    const [first, second] = await submit(cap, 2);
    const held = await claimOne(cap, 'w4');
    expect((await call(r.url, 'POST', '/admin/drain')).body).toMatchObject({ draining: true });
    try {
      const res = await fetch(`${r.url}/jobs/batch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ instance_id: 'w4', deltas: [completed(held)], claim: { capability: cap } }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get(headers.draining)).toBe('true');
      expect(await res.json()).toEqual({ accepted: 1, rejected: [], claimed: [] });
      expect(await row(first as string)).toMatchObject({ status: 'completed' });
      expect(await row(second as string)).toMatchObject({
        owner_instance_id: null,
        epoch: 0,
        attempt_count: 0,
      });
    } finally {
      await call(r.url, 'DELETE', '/admin/drain');
    }
    const after = await call(r.url, 'POST', '/jobs/batch', {
      instance_id: 'w4',
      deltas: [{ id: first, claim_epoch: held.claim_epoch, status: 'completed', result: { ok: true } }],
      claim: { capability: cap },
    });
    expect(after.body.claimed.map((j: { id: string }) => j.id)).toEqual([second]);
  });

  it.each([
    ['with the feature off', 'off'],
    [
      'of the released 0.1.0 (where an SDK that read a newer replica’s features may send it mid-upgrade)',
      '0.1.0',
    ],
  ] as const)('is ignored by a registry %s', async (_, which) => {
    const off = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: `beside-${which}`,
      ...(which === 'off'
        ? { env: { MESH_CLAIM_BESIDE_DELTAS: 'false' } }
        : { bin: (await installedRelease('0.1.0')).registryBin }),
    });
    try {
      expect((await call(off.url, 'GET', '/health')).body.features).not.toContain(features.claimBesideDeltas);
      const cap = capability();
      const [first, second] = await submit(cap, 2);
      const held = await claimOne(cap, 'w5');
      expect(held.id).toBe(first);
      const res = await call(off.url, 'POST', '/jobs/batch', {
        instance_id: 'w5',
        deltas: [completed(held)],
        claim: { capability: cap },
      });
      expect(res.body).toEqual({ accepted: 1, rejected: [] });
      expect(await row(second as string)).toMatchObject({ owner_instance_id: null, epoch: 0 });
    } finally {
      await off.stop();
    }
  });
});

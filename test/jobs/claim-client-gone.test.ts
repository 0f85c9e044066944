import http from 'node:http';
import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { until } from '../support/until.ts';

/**
 * A claim whose client disconnects while its statement runs (routes/jobs.ts
 * `claimAnswer`): the jobs it claimed are given back as soon as it
 * commits (queued, attempt uncounted, epoch spent), not held until their
 * lease expires (300 s here) and counted as an attempt. The claim statement
 * is held on a table lock taken by the test, the client goes away, the lock
 * is released: a real registry and database, no sleeps.
 */
const db = useTestDatabase();
let r: RegistryProcess;
let sql: postgres.Sql;
let n = 0;
const capability = () => `gone-${++n}`;

beforeAll(async () => {
  r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'gone' });
  sql = postgres(db.url, { max: 2, onnotice: () => {} });
});
afterAll(async () => {
  await sql?.end();
  await r?.stop();
});

/** Sends a JSON POST on a connection of its own; `abort()` closes it before any answer. */
function postThenAbort(path: string, body: unknown) {
  const text = JSON.stringify(body);
  const req = http.request(`${r.url}${path}`, {
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) },
  });
  const settled = new Promise<void>((resolve) => {
    req.on('error', () => resolve());
    req.on('response', () => resolve());
    req.on('close', () => resolve());
  });
  req.end(text);
  return {
    abort: async () => {
      req.destroy();
      await settled;
    },
  };
}

const row = async (id: string) =>
  (
    await sql`select status, owner_instance_id, claim_epoch::int as epoch, attempt_count, lease_expires_at is null as no_lease
              from jobs where id = ${id}`
  )[0];

/** Runs `send` while the jobs table is locked; the client leaves before the lock goes. */
async function whileLocked(send: () => { abort: () => Promise<void> }) {
  await sql.begin(async (tx) => {
    await tx`lock table jobs in access exclusive mode`;
    const pending = send();
    // The registry's statement waits on the lock.
    await until('the claim statement waits on the lock', async () => {
      const [w] = await sql`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock' and query ilike '%jobs%'`;
      return (w?.n ?? 0) > 0;
    });
    await pending.abort();
    // A request on a new connection answered: the registry has read the
    // earlier connection's close, sent before it.
    expect((await call(r.url, 'GET', '/health')).status).toBe(200);
  });
}

/**
 * The job a claim took is queued again, its attempt uncounted and its epoch
 * spent; the next claim gets it at attempt 1, epoch 2; the metric counts it.
 */
async function expectGivenBack(base: string, cap: string, id: string, outcome: string) {
  await until('the job is queued again', async () => {
    const j = await row(id);
    return j?.owner_instance_id === null && j.epoch === 1 ? j : undefined;
  });
  expect(await row(id)).toEqual({
    status: 'working',
    owner_instance_id: null,
    epoch: 1,
    attempt_count: 0,
    no_lease: true,
  });
  const next = await call(base, 'POST', '/jobs/claim', { capability: cap, instance_id: 'next-owner' });
  expect(next.body.claimed).toMatchObject([{ id, attempt_count: 1, claim_epoch: 2 }]);
  const metrics = await fetch(`${base}/metrics`).then((res) => res.text());
  expect(metrics).toMatch(new RegExp(`mesh_claims_total\\{outcome="${outcome}"\\} 1\\b`));
}

describe('a claim whose client left before its answer', () => {
  it('gives its jobs back at once, the attempt uncounted', async () => {
    const cap = capability();
    const created = await call(r.url, 'POST', '/jobs', {
      capability: cap,
      submitted_by: 't',
      submitted_payload: {},
    });
    const id = created.body.job_id ?? created.body.id;
    await whileLocked(() => postThenAbort('/jobs/claim', { capability: cap, instance_id: 'left' }));
    await expectGivenBack(r.url, cap, id, 'client_gone');
  });

  it('beside deltas: the deltas stand, the claimed job is given back', async () => {
    const cap = capability();
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const created = await call(r.url, 'POST', '/jobs', {
        capability: cap,
        submitted_by: 't',
        submitted_payload: { i },
      });
      ids.push(created.body.job_id ?? created.body.id);
    }
    const held = (await call(r.url, 'POST', '/jobs/claim', { capability: cap, instance_id: 'left-2' })).body
      .claimed[0];
    expect(held.id).toBe(ids[0]);
    await whileLocked(() =>
      postThenAbort('/jobs/batch', {
        instance_id: 'left-2',
        deltas: [{ id: held.id, claim_epoch: held.claim_epoch, status: 'completed', result: { ok: true } }],
        claim: { capability: cap },
      }),
    );
    await until('the second job is queued again', async () => {
      const j = await row(ids[1] as string);
      return j?.owner_instance_id === null && j.epoch === 1 ? j : undefined;
    });
    expect(await row(ids[1] as string)).toMatchObject({ owner_instance_id: null, attempt_count: 0 });
    expect(await row(held.id)).toMatchObject({ status: 'completed', owner_instance_id: 'left-2' });
  });

  it('a claim the database bound answered 503 gives back the jobs its statement took afterwards (issue 29 item 2)', async () => {
    // A replica of its own with a 1 s bound: the claim is answered 503 while
    // its statement waits on the lock, and commits when the lock goes.
    const bounded = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'gone-503',
      args: ['--db-request-timeout', '1s'],
    });
    try {
      const cap = capability();
      const created = await call(bounded.url, 'POST', '/jobs', {
        capability: cap,
        submitted_by: 't',
        submitted_payload: {},
      });
      const id = created.body.job_id ?? created.body.id;
      let answered: Promise<{ status: number; body: { code?: string } }> | undefined;
      await sql.begin(async (tx) => {
        await tx`lock table jobs in access exclusive mode`;
        answered = call(bounded.url, 'POST', '/jobs/claim', { capability: cap, instance_id: 'told-503' });
        expect(await answered).toMatchObject({ status: 503, body: { code: 'unavailable' } });
      });
      // The lock is gone: the statement commits, for a client told it failed.
      await expectGivenBack(bounded.url, cap, id, 'timed_out');
    } finally {
      await bounded.stop();
    }
  });
});

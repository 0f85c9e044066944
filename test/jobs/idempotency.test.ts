import { errorBodySchema, features, headers, limits } from '@mesh/protocol';
import { adminUrl, installedRelease, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWireTap } from '../support/wire-tap.ts';

// biome-ignore lint/suspicious/noExplicitAny: raw wire bodies
const wire = (value: unknown): any => value;

/**
 * `Idempotency-Key` on `POST /jobs` (issue 20): client retries never
 * duplicate a job, across replicas, concurrently, and through a database cut;
 * a different request under a used key is refused (422); keys are bounded.
 */
describe('POST /jobs with Idempotency-Key', () => {
  const db = useTestDatabase();
  let a: { url: string };
  let b: { url: string };
  let sql: postgres.Sql;

  beforeAll(async () => {
    [a, b] = await Promise.all([
      spawnRegistry({ databaseUrl: db.url, replicaId: 'idem-a' }),
      spawnRegistry({ databaseUrl: db.url, replicaId: 'idem-b' }),
    ]);
    sql = postgres(db.url, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql?.end();
  });

  const job = (payload: Record<string, unknown> = { n: 1 }) => ({
    capability: 'idem',
    submitted_by: 'test',
    submitted_payload: payload,
  });
  const submit = (url: string, body: unknown, key?: string) =>
    fetch(`${url}/jobs`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(key === undefined ? {} : { [headers.idempotencyKey]: key }),
      },
      body: JSON.stringify(body),
    });
  const jobsWithKey = async (key: string) =>
    (await sql<{ id: string }[]>`select id from jobs where idempotency_key = ${key}`).map((r) => r.id);

  it('is advertised in /health', async () => {
    const health = await (await fetch(`${a.url}/health`)).json().then(wire);
    expect(health.features).toContain(features.idempotentSubmit);
  });

  it('answers the same key on two replicas with the job first created: 201, same body, marked replayed', async () => {
    const key = crypto.randomUUID();
    const first = await submit(a.url, job(), `"${key}"`);
    expect(first.status).toBe(201);
    expect(first.headers.get(headers.idempotentReplayed)).toBeNull();
    const created = await first.json().then(wire);
    // The draft's quoted form and a bare key are the same key.
    const again = await submit(b.url, job(), key);
    expect(again.status).toBe(201);
    expect(again.headers.get(headers.idempotentReplayed)).toBe('true');
    expect(await again.json().then(wire)).toEqual(created);
    expect(await jobsWithKey(key)).toEqual([created.id]);
  });

  it('creates exactly one job for 20 concurrent submissions with one key across two replicas', async () => {
    const key = crypto.randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => submit(i % 2 ? b.url : a.url, job({ n: 'race' }), key)),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(201));
    const ids = new Set(await Promise.all(answers.map(async (r) => (await r.json().then(wire)).id)));
    expect(ids.size).toBe(1);
    expect(answers.filter((r) => r.headers.get(headers.idempotentReplayed) === null)).toHaveLength(1);
    expect(await jobsWithKey(key)).toEqual([...ids]);
  });

  it('treats the same request written differently as the same request', async () => {
    const key = crypto.randomUUID();
    const first = await (
      await submit(a.url, { ...job({ x: 1, y: [1, { b: 2, a: 1 }] }), max_retries: 1 }, key)
    )
      .json()
      .then(wire);
    // Keys in another order, the default spelled out, owner blank: still the same job.
    const same = await submit(
      b.url,
      {
        submitted_payload: { y: [1, { a: 1, b: 2 }], x: 1 },
        submitted_by: 'test',
        capability: 'idem',
        owner_instance_id: '',
      },
      key,
    );
    expect(same.status).toBe(201);
    expect((await same.json().then(wire)).id).toBe(first.id);
  });

  it('refuses a different request under a used key with 422 idempotency_key_reused, storing nothing', async () => {
    const key = crypto.randomUUID();
    const first = await (await submit(a.url, job({ n: 1 }), key)).json().then(wire);
    for (const other of [
      job({ n: 2 }),
      { ...job({ n: 1 }), capability: 'other' },
      { ...job({ n: 1 }), max_retries: 3 },
    ]) {
      const res = await submit(b.url, other, key);
      expect(res.status).toBe(422);
      const body = errorBodySchema.parse(await res.json().then(wire));
      expect(body.code).toBe('idempotency_key_reused');
      expect(body.error).toContain(first.id);
    }
    expect(await jobsWithKey(key)).toEqual([first.id]);
  });

  it('refuses malformed keys with 400 before storing anything', async () => {
    const before = (await sql<{ n: number }[]>`select count(*)::int as n from jobs`)[0]?.n ?? 0;
    for (const bad of [
      '',
      '""',
      'x'.repeat(limits.maxIdempotencyKeyLength + 1),
      'a"b',
      'back\\slash',
      'tab\there',
      'é',
    ]) {
      const res = await submit(a.url, job(), bad);
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(errorBodySchema.parse(await res.json().then(wire)).code).toBe('bad_request');
    }
    const longest = 'k'.repeat(limits.maxIdempotencyKeyLength);
    expect((await submit(a.url, job(), longest)).status).toBe(201);
    const after = (await sql<{ n: number }[]>`select count(*)::int as n from jobs`)[0]?.n;
    expect(after).toBe(before + 1);
  });

  it('leaves submissions without a key as they were: each one a new job', async () => {
    const ids = await Promise.all(
      [a, b].map(async (r) => (await (await submit(r.url, job())).json().then(wire)).id),
    );
    expect(new Set(ids).size).toBe(2);
  });

  it('gives the same job to a retry whose first answer was lost, through a database cut', async () => {
    const key = crypto.randomUUID();
    const tap = await startWireTap(a.url);
    const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    const name = new URL(db.url).pathname.slice(1);
    try {
      // The insert commits; the client never hears of it.
      tap.loseAnswers(1);
      await expect(submit(tap.url, job({ n: 'cut' }), key)).rejects.toThrow();
      expect(tap.calls.at(-1)?.status).toBe(-201);
      const [committed] = await jobsWithKey(key);
      expect(committed).toBeDefined();
      // The database goes away under both replicas: every pooled connection is cut.
      await admin.unsafe(`alter database "${name}" allow_connections false`);
      await admin`select pg_terminate_backend(pid) from pg_stat_activity
                  where datname = ${name} and pid <> pg_backend_pid()`;
      // Refused, nothing stored: 503 whether the cut pooled connection answers
      // (57P01) or a fresh one is refused by allow_connections=false (55000).
      const during = await submit(b.url, job({ n: 'cut' }), key);
      expect(during.status).toBe(503);
      await admin.unsafe(`alter database "${name}" allow_connections true`);
      // The client's retries, on both replicas, once it is back. A replica's
      // first request may still meet a connection the cut killed (503, nothing
      // stored): a client retries that, as the SDK does.
      for (const r of [a, b]) {
        let res = await submit(r.url, job({ n: 'cut' }), key);
        for (let attempt = 0; res.status === 503 && attempt < 20; attempt++) {
          await new Promise((w) => setTimeout(w, 100));
          res = await submit(r.url, job({ n: 'cut' }), key);
        }
        expect(res.status).toBe(201);
        expect((await res.json().then(wire)).id).toBe(committed);
      }
      expect(await jobsWithKey(key)).toEqual([committed]);
    } finally {
      await admin.unsafe(`alter database "${name}" allow_connections true`).catch(() => {});
      await admin.end();
      await tap.close();
    }
  });
});

describe('Idempotency-Key retention', () => {
  const db = useTestDatabase();

  it('is the job retention: once the sweeper deletes the finished job, its key is free', async () => {
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'idem-ret',
      env: { MESH_JOB_RETENTION: '1s', MESH_SWEEP_INTERVAL: '200ms' },
    });
    const key = crypto.randomUUID();
    const post = () =>
      fetch(`${r.url}/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [headers.idempotencyKey]: key },
        body: JSON.stringify({ capability: 'idem', submitted_by: 't', submitted_payload: {} }),
      }).then((res) => res.json().then(wire));
    const first = await post();
    expect((await fetch(`${r.url}/jobs/${first.id}/cancel`, { method: 'POST', body: '{}' })).status).toBe(
      200,
    );
    // Still finished and kept: the key still names it.
    expect((await post()).id).toBe(first.id);
    await expect
      .poll(async () => (await fetch(`${r.url}/jobs/${first.id}`)).status, { timeout: 20_000, interval: 250 })
      .toBe(404);
    const second = await post();
    expect(second.id).not.toBe(first.id);
  });
});

describe('a 0.1.0 registry', () => {
  const db = useTestDatabase();

  it('ignores Idempotency-Key: the same key twice makes two jobs (the degradation clients must expect)', async () => {
    const old = await spawnRegistry({
      bin: (await installedRelease('0.1.0')).registryBin,
      databaseUrl: db.url,
      replicaId: 'idem-010',
    });
    const health = await (await fetch(`${old.url}/health`)).json().then(wire);
    expect(health.features).not.toContain(features.idempotentSubmit);
    const key = crypto.randomUUID();
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${old.url}/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [headers.idempotencyKey]: key },
        body: JSON.stringify({ capability: 'idem', submitted_by: 't', submitted_payload: {} }),
      });
      expect(res.status).toBe(201);
      ids.push((await res.json().then(wire)).id);
    }
    expect(new Set(ids).size).toBe(2);
  });
});

import { headers } from '@mesh/protocol';
import { RegistryClient, RegistryError, RegistryUnreachableError } from '@mesh/sdk';
import { installedRelease, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWireTap, type WireTap } from '../support/wire-tap.ts';

const jobIds = async (sql: postgres.Sql, capability: string) =>
  (await sql<{ id: string }[]>`select id from jobs where capability = ${capability}`).map((r) => r.id);

/**
 * `client.submit()` sends an `Idempotency-Key` (its own random UUID, or the
 * caller's) and, against registries that advertise `idempotent-submit`,
 * retries a submission whose answer was lost, with the same key: one job.
 */
describe('RegistryClient.submit against 0.2.0', () => {
  const db = useTestDatabase();
  let a: { url: string };
  let b: { url: string };
  let tap: WireTap;
  let sql: postgres.Sql;

  beforeAll(async () => {
    [a, b] = await Promise.all([
      spawnRegistry({ databaseUrl: db.url, replicaId: 'sdk-idem-a' }),
      spawnRegistry({ databaseUrl: db.url, replicaId: 'sdk-idem-b' }),
    ]);
    tap = await startWireTap(a.url);
    sql = postgres(db.url, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await tap?.close();
    await sql?.end();
  });

  it('retries a submission whose answer was lost at the next URL with the same key, and yields one job', async () => {
    const client = new RegistryClient({ urls: [tap.url, b.url] });
    await client.info();
    tap.loseAnswers(1);
    const { id } = await client.submit({
      capability: 'sdk-lost',
      submitted_by: 't',
      submitted_payload: { n: 1 },
    });
    const sent = tap.calls.filter((c) => c.method === 'POST' && c.path === '/jobs');
    expect(sent).toHaveLength(1);
    expect(sent[0]?.status).toBe(-201);
    expect(sent[0]?.headerNames).toContain(headers.idempotencyKey.toLowerCase());
    expect(await jobIds(sql, 'sdk-lost')).toEqual([id]);
  });

  it('a submission whose every answer was lost throws an error carrying its key; submitting again with it returns the job it created (issue 29 item 3)', async () => {
    const client = new RegistryClient({ urls: [tap.url], attempts: 1 });
    await client.info();
    tap.loseAnswers(1);
    const job = { capability: 'sdk-lost-all', submitted_by: 't', submitted_payload: { n: 1 } };
    const err = await client.submit(job).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RegistryUnreachableError);
    const key = (err as RegistryUnreachableError).idempotencyKey as string;
    expect(key).toMatch(/^[0-9a-f-]{36}$/);
    expect((err as Error).message).toContain(`submit it again with { idempotencyKey: '${key}' }`);
    const created = await jobIds(sql, 'sdk-lost-all');
    expect(created).toHaveLength(1); // the lost attempt did create it
    const again = await client.submit(job, { idempotencyKey: key });
    expect(again.id).toBe(created[0]);
    expect(await jobIds(sql, 'sdk-lost-all')).toEqual(created);
  });

  it('sends a new key per call, so two submissions of one job are two jobs', async () => {
    const client = new RegistryClient({ urls: [a.url] });
    const job = { capability: 'sdk-two', submitted_by: 't', submitted_payload: {} };
    const [x, y] = [await client.submit(job), await client.submit(job)];
    expect(x.id).not.toBe(y.id);
  });

  it("takes the caller's key: the same key is the same job, a different job under it is refused (422)", async () => {
    const client = new RegistryClient({ urls: [a.url, b.url] });
    const job = { capability: 'sdk-own', submitted_by: 't', submitted_payload: { order: 42 } };
    const first = await client.submit(job, { idempotencyKey: 'order-42' });
    const again = await new RegistryClient({ urls: [b.url] }).submit(job, { idempotencyKey: 'order-42' });
    expect(again.id).toBe(first.id);
    const refused = await client
      .submit({ ...job, submitted_payload: { order: 43 } }, { idempotencyKey: 'order-42' })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RegistryError);
    expect((refused as RegistryError).status).toBe(422);
    expect((refused as RegistryError).body).toMatchObject({ code: 'idempotency_key_reused' });
    await expect(client.submit(job, { idempotencyKey: 'bad"key' })).rejects.toThrow(RangeError);
    expect(await jobIds(sql, 'sdk-own')).toEqual([first.id]);
  });
});

describe('RegistryClient.submit against 0.1.0', () => {
  const db = useTestDatabase();

  it('sends the key (ignored) and keeps the old behaviour: a lost answer is not retried, no duplicate', async () => {
    const old = await spawnRegistry({
      bin: (await installedRelease('0.1.0')).registryBin,
      databaseUrl: db.url,
      replicaId: 'sdk-idem-010',
    });
    const tap = await startWireTap(old.url);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const client = new RegistryClient({ urls: [tap.url, old.url] });
      expect((await client.info()).features.has('idempotent-submit')).toBe(false);
      tap.loseAnswers(1);
      await expect(
        client.submit({ capability: 'sdk-old', submitted_by: 't', submitted_payload: {} }),
      ).rejects.toThrow();
      const sent = tap.calls.filter((c) => c.method === 'POST' && c.path === '/jobs');
      expect(sent).toHaveLength(1);
      expect(sent[0]?.headerNames).toContain(headers.idempotencyKey.toLowerCase());
      // One job, which the caller does not know of: the degradation an older registry means.
      expect(await jobIds(sql, 'sdk-old')).toHaveLength(1);
    } finally {
      await tap.close();
      await sql.end();
    }
  });
});

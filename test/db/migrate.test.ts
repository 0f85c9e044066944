import { createHash } from 'node:crypto';
import {
  type BundledMigration,
  ledgerTable,
  migrate,
  migrationLockKey,
  readBundledMigrations,
  SchemaError,
} from '@mesh/db';
import { adminUrl, createDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';

const synthetic = (
  idx: number,
  name: string,
  sqlText: string,
  declared: Pick<BundledMigration, 'compatibility' | 'oldestCompatible'> = { compatibility: 'compatible' },
): BundledMigration => ({
  idx,
  name,
  hash: createHash('sha256').update(sqlText).digest('hex'),
  statements: [sqlText],
  release: '0.1.0',
  reason: `creates ${name}`,
  ...declared,
});
const a = synthetic(0, '0000_a', 'create table mig_a (id int)');
const b = synthetic(1, '0001_b', 'create table mig_b (id int)');
const c = synthetic(2, '0002_c', 'create table mig_c (id int)');

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0)) await f();
});

async function emptyDatabase() {
  const db = await createDatabase(adminUrl(), { migrated: false });
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  cleanups.push(async () => {
    await sql.end();
    await db.drop();
  });
  return { url: db.url, sql };
}

const ledger = (sql: postgres.Sql) =>
  sql<{ name: string; hash: string }[]>`select name, hash from ${sql(ledgerTable)} order by idx`;

describe('migrate at boot', () => {
  it('applies the bundled migrations once and records names and hashes', async () => {
    const { url, sql } = await emptyDatabase();
    const bundled = readBundledMigrations();
    const first = await migrate(url);
    expect(first.applied).toEqual(bundled.map((m) => m.name));
    expect(first.schemaVersion).toBe(bundled.length);
    const again = await migrate(url);
    expect(again.applied).toEqual([]);
    expect(await ledger(sql)).toEqual(bundled.map((m) => ({ name: m.name, hash: m.hash })));
    const tables = await sql<{ t: string }[]>`
      select table_name as t from information_schema.tables where table_schema = 'public' order by 1`;
    expect(tables.map((r) => r.t)).toEqual(
      expect.arrayContaining([
        'agent_capabilities',
        'agents',
        'job_events',
        'jobs',
        'registry_replicas',
        'registry_settings',
      ]),
    );
  });

  it('applies a migration that was merged out of order instead of skipping it', async () => {
    const { url, sql } = await emptyDatabase();
    await migrate(url, { migrations: [a, c] });
    // drizzle's migrator compares timestamps with the last applied one and would skip b.
    const result = await migrate(url, { migrations: [a, b, c] });
    expect(result.applied).toEqual(['0001_b']);
    expect((await ledger(sql)).map((r) => r.name)).toEqual(['0000_a', '0001_b', '0002_c']);
    expect(await sql`select to_regclass('mig_b') as t`).toEqual([{ t: 'mig_b' }]);
  });

  it('runs on a database ahead of it when every migration it does not know is compatible, and says so', async () => {
    const { url, sql } = await emptyDatabase();
    await migrate(url, { migrations: [a, b, c] });
    const result = await migrate(url, { migrations: [a, b], release: '0.1.0' });
    expect(result).toMatchObject({
      applied: [],
      schemaVersion: 2,
      databaseVersion: 3,
      databaseVersionName: '0002_c',
    });
    expect(result.ahead).toMatchObject([
      { name: '0002_c', compatibility: 'compatible', reason: 'creates 0002_c' },
    ]);
    expect((await ledger(sql)).map((r) => r.name)).toEqual(['0000_a', '0001_b', '0002_c']);
  });

  it('refuses a database holding a migration breaking for its release, naming both versions, the migration and the release needed', async () => {
    const { url, sql } = await emptyDatabase();
    const breaking = synthetic(2, '0002_c', 'create table mig_c (id int)', {
      compatibility: 'breaking',
      oldestCompatible: '0.3.0',
    });
    await migrate(url, { migrations: [a, b, breaking] });
    const error = await migrate(url, { migrations: [a, b], release: '0.2.5' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SchemaError);
    expect(error).toMatchObject({
      kind: 'breaking_migration',
      databaseVersion: '3 (0002_c)',
      binaryVersion: '2 (0001_b)',
      blocking: { name: '0002_c', oldestCompatible: '0.3.0' },
    });
    expect((error as Error).message).toMatch(
      /database is at schema version 3 \(0002_c\).*release 0\.2\.5.*knows schema version 2 \(0001_b\).*migration 0002_c is breaking.*release 0\.3\.0 or newer/,
    );
    // Nothing was changed by the refused run.
    expect((await ledger(sql)).map((r) => r.name)).toEqual(['0000_a', '0001_b', '0002_c']);
    // A release at or past oldest_compatible runs there although it does not know the migration.
    await expect(migrate(url, { migrations: [a, b], release: '0.3.0' })).resolves.toMatchObject({
      applied: [],
    });
    // A binary that does not say its release is refused (it cannot be shown to be new enough).
    await expect(migrate(url, { migrations: [a, b] })).rejects.toMatchObject({ kind: 'breaking_migration' });
  });

  it("records each migration's declaration in the ledger", async () => {
    const { url, sql } = await emptyDatabase();
    const breaking = synthetic(1, '0001_b', 'create table mig_b (id int)', {
      compatibility: 'breaking',
      oldestCompatible: '0.2.0',
    });
    await migrate(url, { migrations: [a, breaking] });
    expect(
      await sql`select name, compatibility, release, oldest_compatible, reason from ${sql(ledgerTable)} order by idx`,
    ).toEqual([
      {
        name: '0000_a',
        compatibility: 'compatible',
        release: '0.1.0',
        oldest_compatible: null,
        reason: 'creates 0000_a',
      },
      {
        name: '0001_b',
        compatibility: 'breaking',
        release: '0.1.0',
        oldest_compatible: '0.2.0',
        reason: 'creates 0001_b',
      },
    ]);
  });

  it('refuses a database where a known migration was applied with different SQL', async () => {
    const { url } = await emptyDatabase();
    await migrate(url, { migrations: [a, b] });
    const altered = synthetic(1, '0001_b', 'create table mig_b (id bigint)');
    await expect(migrate(url, { migrations: [a, altered] })).rejects.toMatchObject({ kind: 'hash_mismatch' });
  });

  it('gives up with a clear error when another replica holds the migration lock past lock_timeout', async () => {
    const { url } = await emptyDatabase();
    const holder = postgres(url, { max: 1, onnotice: () => {} });
    cleanups.push(() => holder.end());
    await holder`select pg_advisory_lock(${migrationLockKey.toString()}::bigint)`;
    const started = Date.now();
    const error = await migrate(url, { migrations: [a], lockTimeoutMs: 300 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: 'lock_timeout' });
    expect((error as Error).message).toMatch(/timed out after 300 ms waiting for the migration lock/);
    expect(Date.now() - started).toBeLessThan(10_000);
    await holder`select pg_advisory_unlock(${migrationLockKey.toString()}::bigint)`;
    await expect(migrate(url, { migrations: [a] })).resolves.toMatchObject({ applied: ['0000_a'] });
  });

  it('lets many concurrent migrators apply each migration exactly once', async () => {
    const { url, sql } = await emptyDatabase();
    const results = await Promise.all(Array.from({ length: 8 }, () => migrate(url)));
    const appliedCounts = results.flatMap((r) => r.applied);
    const bundled = readBundledMigrations();
    expect(appliedCounts.sort()).toEqual(bundled.map((m) => m.name).sort());
    expect((await ledger(sql)).length).toBe(bundled.length);
  });

  it('rolls back a failing migration whole, leaving no ledger row', async () => {
    const { url, sql } = await emptyDatabase();
    const broken: BundledMigration = {
      ...synthetic(1, '0001_broken', 'x'),
      statements: ['create table ok_part (id int)', 'select * from missing_table'],
    };
    await expect(migrate(url, { migrations: [a, broken] })).rejects.toThrow(/missing_table/);
    expect((await ledger(sql)).map((r) => r.name)).toEqual(['0000_a']);
    expect(await sql`select to_regclass('ok_part') as t`).toEqual([{ t: null }]);
  });
});

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ledgerTable, registryTables } from '@mesh/db';
import { spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { bundledSchema, meshctl } from './support.ts';

const fresh = useTestDatabase({ migrated: false });
const db = useTestDatabase();
const dir = mkdtempSync(join(tmpdir(), 'meshctl-snapshots-'));
const pools: postgres.Sql[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end({ timeout: 5 })));
  rmSync(dir, { recursive: true, force: true });
});
const connect = (url: string) => {
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  pools.push(sql);
  return sql;
};

const dbctl = (url: string, args: string[]) => meshctl(['db', ...args], { env: { DATABASE_URL: url } });
const json = <T = Record<string, unknown>>(stdout: string): T => JSON.parse(stdout) as T;
// What this build bundles: its schema version and newest migration, and a migration from a newer release.
const { bundled, names, version, newest, future } = bundledSchema();
const first = bundled[0]!;

/** Every row of every registry table, as PostgreSQL prints it, in a stable order. */
async function contents(sql: postgres.Sql): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const t of [ledgerTable, ...registryTables]) {
    const rows = await sql.unsafe(`select row_to_json(t)::text as r from "${t}" t order by 1`);
    out[t] = rows.map((r) => r.r as string);
  }
  return out;
}

describe('meshctl db status / migrate', () => {
  it('on an empty database: status says migrations are pending, --dry-run lists them and changes nothing', async () => {
    const status = await dbctl(fresh.url, ['status']);
    expect(status.code, status.stderr).toBe(0);
    for (const name of names) expect(status.stdout).toContain(name);
    expect(status.stdout).toMatch(/Verdict: migrations pending/);
    expect(status.stdout).toContain('Fix:     meshctl db migrate');

    const asJson = json(await dbctl(fresh.url, ['status', '--json']).then((r) => r.stdout));
    expect(asJson).toMatchObject({
      verdict: 'pending',
      database: { version: 0, name: null },
      binary: { version, name: newest },
      pending: names,
      unknown: [],
      modified: [],
    });
    expect(asJson.migrations).toEqual(
      names.map((name) => expect.objectContaining({ name, state: 'pending', applied: false })),
    );

    const dry = await dbctl(fresh.url, ['migrate', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(
      `Would apply ${names.length} migration(s) (schema 0 (empty) -> ${version} (${newest}))`,
    );
    for (const name of names) expect(dry.stdout).toContain(`  ${name}`);
    expect(json((await dbctl(fresh.url, ['migrate', '--dry-run', '--json'])).stdout)).toEqual({
      dry_run: true,
      would_apply: names,
      database_version: 0,
      binary_version: version,
    });
    const sql = connect(fresh.url);
    expect((await sql`select to_regclass('jobs') as t`)[0]?.t).toBeNull();
  });

  it('migrates, then reports up to date; a second migrate has nothing to do', async () => {
    const run = await dbctl(fresh.url, ['migrate']);
    expect(run.code, run.stderr).toBe(0);
    for (const name of names) expect(run.stdout).toContain(`Applied ${name}`);
    expect(run.stdout).toContain(`the database is at schema ${version} (${newest})`);
    const sql = connect(fresh.url);
    expect((await sql`select applied_by from mesh_schema_migrations`)[0]?.applied_by).toMatch(/^meshctl /);

    const again = await dbctl(fresh.url, ['migrate', '--json']);
    expect(json(again.stdout)).toEqual({ applied: [], schema_version: version, schema_version_name: newest });
    const status = await dbctl(fresh.url, ['status']);
    expect(status.stdout).toMatch(/Verdict: up to date/);
    expect(json((await dbctl(fresh.url, ['status', '--json'])).stdout)).toMatchObject({
      verdict: 'up_to_date',
      database: { version, name: newest },
    });
    const dry = await dbctl(fresh.url, ['migrate', '--dry-run']);
    expect(dry.stdout).toContain(`Nothing to apply: the database is at schema ${version} (${newest})`);
  });

  it('a database migrated by a newer release: status says so, migrate and snapshot refuse (exit 1)', async () => {
    const sql = connect(fresh.url);
    await sql`insert into mesh_schema_migrations (name, idx, hash) values (${future.name}, ${future.idx}, 'abc')`;
    try {
      const status = await dbctl(fresh.url, ['status', '--json']);
      expect(status.code).toBe(0);
      expect(json(status.stdout)).toMatchObject({
        verdict: 'database_newer',
        unknown: [future.name],
        database: { version: version + 1, name: future.name },
      });
      const migrate = await dbctl(fresh.url, ['migrate']);
      expect(migrate.code).toBe(1);
      expect(migrate.stderr).toContain('database newer than this meshctl');
      const dry = await dbctl(fresh.url, ['migrate', '--dry-run']);
      expect(dry.code).toBe(1);
      const snap = await dbctl(fresh.url, ['snapshot', '--dir', dir, '--name', 'never']);
      expect(snap.code).toBe(1);
      expect(snap.stderr).toContain(future.name);
      expect((await dbctl(fresh.url, ['snapshots', '--dir', dir, '--json'])).stdout).not.toContain('never');

      await sql`update mesh_schema_migrations set hash = 'edited' where name = ${first.name}`;
      expect(json((await dbctl(fresh.url, ['status', '--json'])).stdout)).toMatchObject({
        verdict: 'history_modified',
        modified: [first.name],
      });
    } finally {
      await sql`delete from mesh_schema_migrations where name = ${future.name}`;
      await sql`update mesh_schema_migrations set hash = ${first.hash} where name = ${first.name}`;
    }
  });

  it('without a database URL: exit 2 with a hint; an unreachable database: exit 2', async () => {
    for (const args of [
      ['status'],
      ['migrate', '--dry-run'],
      ['snapshot', '--dir', dir],
      ['restore', 'x', '--dir', dir],
    ]) {
      const r = await meshctl(['db', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('no database given');
      expect(r.stderr).toContain('DATABASE_URL');
    }
    const down = await meshctl([
      'db',
      'status',
      '--database-url',
      'postgres://nobody:secret@127.0.0.1:1/mesh',
    ]);
    expect(down.code).toBe(2);
    expect(down.stderr).toContain('cannot reach the database at postgres://nobody:***@127.0.0.1:1/mesh');
    expect(down.stderr).not.toContain('secret');
    const bad = await meshctl(['db', 'status', '--database-url', 'mysql://x']);
    expect(bad.code).toBe(2);
  });
});

describe('meshctl db snapshot / snapshots / restore', () => {
  it('round-trips every row of every table, exactly, and restore fixes the identity sequences', async () => {
    const sql = connect(db.url);
    // A real registry writes what it writes: jobs, claims, events, agents, capabilities, replicas, settings.
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'snap-1',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    });
    const hb = await call(r.url, 'POST', '/heartbeat', {
      agent_id: 'worker-1a2b3c4d',
      name: 'worker',
      version: '1.0.0',
      runtime: 'typescript',
      http_host: '127.0.0.1',
      http_port: 9301,
      tools: [
        { function_name: 'render', capability: 'render', tags: ['gpu', 'ünïcode'], kwargs: { timeout: 30 } },
        { function_name: 'plan', capability: 'plan', dependencies: [{ capability: 'render' }] },
      ],
    });
    expect(hb.status).toBe(200);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await call(r.url, 'POST', '/jobs', {
        capability: 'render',
        submitted_by: 'test',
        submitted_payload: {
          i,
          text: 'line one\nline "two"\t€',
          nested: { n: -1.5e-7, f: 0.1 },
        },
        max_duration: 600,
      });
      expect(res.status).toBe(201);
      ids.push(res.body.id);
    }
    const claimed = await call(r.url, 'POST', '/jobs/claim', {
      capability: 'render',
      instance_id: 'worker-1a2b3c4d',
    });
    expect(claimed.body.claimed).toHaveLength(1);
    await call(r.url, 'POST', `/jobs/${ids[0]}/events`, { type: 'progress', payload: { pct: 50 } });
    await call(r.url, 'POST', `/jobs/${ids[4]}/cancel`, { reason: 'not needed' });
    expect((await call(r.url, 'POST', '/admin/fleet/drain')).status).toBe(200);
    expect((await call(r.url, 'DELETE', '/admin/fleet/drain')).status).toBe(200);
    // Values a JSON round trip through JavaScript would damage: int8 past 2^53, microseconds.
    await sql`update jobs set claim_epoch = 9007199254740993, submitted_at = '2026-01-02 03:04:05.123456+00',
                              result = '{"big": 12345678901234567890, "exact": 0.10000000000000000001}'
              where id = ${ids[1] as string}`;
    await r.stop();

    const before = await contents(sql);
    for (const t of [
      'agents',
      'agent_capabilities',
      'jobs',
      'job_events',
      'registry_replicas',
      'registry_settings',
    ]) {
      expect(before[t]?.length, t).toBeGreaterThan(0);
    }

    const snap = await dbctl(db.url, ['snapshot', '--dir', dir, '--name', 'before', '--json']);
    expect(snap.code, snap.stderr).toBe(0);
    const header = json<{
      total_rows: number;
      tables: { name: string; rows: number }[];
      schema: { version: number };
    }>(snap.stdout);
    expect(header.schema.version).toBe(version);
    expect(header.tables.map((t) => t.name).sort()).toEqual([ledgerTable, ...registryTables].sort());
    for (const t of header.tables) expect(t.rows, t.name).toBe(before[t.name]?.length);

    const listed = await dbctl(db.url, ['snapshots', '--dir', dir]);
    expect(listed.stdout).toMatch(
      new RegExp(`before\\s+\\S+Z\\s+${version} \\(${newest}\\)\\s+\\d+\\s+\\S+`),
    );
    const listedJson = json<{ snapshots: { name: string; rows: number; schema_version: number }[] }>(
      (await dbctl(db.url, ['snapshots', '--dir', dir, '--json'])).stdout,
    );
    expect(listedJson.snapshots).toContainEqual(
      expect.objectContaining({ name: 'before', rows: header.total_rows, schema_version: version }),
    );
    // The same name twice: refused, the first kept.
    const twice = await dbctl(db.url, ['snapshot', '--dir', dir, '--name', 'before']);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('already exists');

    // Change everything: delete, update, insert (the identity sequences move on).
    await sql`delete from jobs where id = ${ids[2] as string}`;
    await sql`update agents set name = 'renamed'`;
    await sql`insert into job_events (job_id, seq, type) select id, 99, 'extra' from jobs limit 3`;
    await sql`insert into agent_capabilities (agent_id, capability, function_name) values ('worker-1a2b3c4d', 'x', 'x')`;
    await sql`update registry_settings set value = '{"draining": true}'`;
    await sql`update registry_replicas set version = '9.9.9'`;
    await sql`update mesh_schema_migrations set applied_by = 'someone else'`;
    expect(await contents(sql)).not.toEqual(before);

    // --reset-drain: the snapshot's fleet drain too (by default restore keeps
    // the current one: test/meshctl/restore-drain.test.ts), so every row is the snapshot's.
    const restore = await dbctl(db.url, ['restore', 'before', '--dir', dir, '--reset-drain']);
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toMatch(/Restored snapshot before .*: \d+ rows in 7 tables/);
    expect(await contents(sql)).toEqual(before);

    // New rows get ids after the restored ones.
    const [ev] =
      await sql`insert into job_events (job_id, seq, type) select id, 100, 'after' from jobs limit 1 returning id`;
    const [{ max }] =
      (await sql`select max(id)::int as max from job_events where type <> 'after'`) as unknown as [
        { max: number },
      ];
    expect(Number(ev?.id)).toBe(max + 1);
    await sql`delete from job_events where type = 'after'`;

    // --json
    const again = await dbctl(db.url, ['restore', `${dir}/before.jsonl.gz`, '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(json(again.stdout)).toMatchObject({
      name: 'before',
      total_rows: header.total_rows,
      ledger_restored: true,
      forced: [],
    });
    expect(await contents(sql)).toEqual(before);
  });

  it('refuses (exit 1, nothing changed) a snapshot of another schema, and restores it with --force', async () => {
    const sql = connect(db.url);
    await sql`update agents set name = 'changed after the snapshot'`;
    await sql`insert into mesh_schema_migrations (name, idx, hash) values (${future.name}, ${future.idx}, 'abc')`;
    try {
      const changed = await contents(sql);
      const refused = await dbctl(db.url, ['restore', 'before', '--dir', dir]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('refusing to restore (nothing was changed)');
      expect(refused.stderr).toContain(
        `but the database is at schema ${version + 1} (${future.name}): only in the database: ${future.name}`,
      );
      expect(refused.stderr).toContain('--force');
      expect(await contents(sql)).toEqual(changed);

      const forced = await dbctl(db.url, ['restore', 'before', '--dir', dir, '--force', '--json']);
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stderr).toContain(`--force: snapshot before is of schema ${version}`);
      const body = json<{ ledger_restored: boolean; forced: string[] }>(forced.stdout);
      expect(body.ledger_restored).toBe(false);
      expect(body.forced).toEqual([
        expect.stringContaining(`only in the database: ${future.name}`),
        expect.stringContaining(`migration(s) this meshctl does not know (${future.name})`),
      ]);
      const after = await contents(sql);
      // The ledger still describes this database's tables; every other table is the snapshot's.
      expect(after[ledgerTable]).toEqual(changed[ledgerTable]);
      expect((await sql`select name from agents`).map((a) => a.name)).toEqual(['worker']);
    } finally {
      await sql`delete from mesh_schema_migrations where name = ${future.name}`;
    }
  });

  it('refuses while a registry replica runs on the database, and a damaged file, changing nothing', async () => {
    const sql = connect(db.url);
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'snap-live',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    });
    try {
      await sql`update agents set name = 'while live'`;
      const changed = await contents(sql);
      const refused = await dbctl(db.url, ['restore', 'before', '--dir', dir]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(
        /1 registry replica\(s\) are running on this database: snap-live \(serving/,
      );
      expect(refused.stderr).toContain('Stop every replica first');
      const now = await contents(sql);
      expect(now.agents).toEqual(changed.agents);
      expect(now.jobs).toEqual(changed.jobs);
    } finally {
      await r.stop();
    }

    // A truncated file: the restore reads it to the end inside its transaction, then rolls back.
    const whole = readFileSync(join(dir, 'before.jsonl.gz'));
    writeFileSync(join(dir, 'cut.jsonl.gz'), whole.subarray(0, Math.floor(whole.length * 0.7)));
    const untouched = await contents(sql);
    const cut = await dbctl(db.url, ['restore', 'cut', '--dir', dir]);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toMatch(/damaged|rolled back/);
    expect(await contents(sql)).toEqual(untouched);
    const listed = json<{ snapshots: { name: string; error: string | null }[] }>(
      (await dbctl(db.url, ['snapshots', '--dir', dir, '--json'])).stdout,
    );
    expect(listed.snapshots.map((s) => s.name).sort()).toEqual(['before', 'cut']);
  });

  it('is one instant of the database while writers go on: counts match and every event still has its job', async () => {
    const sql = connect(db.url);
    await sql`insert into jobs (id, capability, submitted_payload)
              select gen_random_uuid(), 'load', jsonb_build_object('i', i) from generate_series(1, 3000) as i`;
    await sql`insert into job_events (job_id, seq, type) select id, 1, 'seed' from jobs where capability = 'load'`;
    // A writer that adds a job then (another transaction) its event, and deletes old jobs
    // with their events: a table-by-table copy would catch events whose job it did not see.
    let writing = true;
    let writes = 0;
    const writer = (async () => {
      while (writing) {
        const [job] = await sql`insert into jobs (id, capability, submitted_payload)
                                values (gen_random_uuid(), 'load', '{}') returning id`;
        await sql`insert into job_events (job_id, seq, type) values (${job?.id}, 1, 'live')`;
        await sql`delete from jobs where id = (select id from jobs where capability = 'load' order by submitted_at limit 1)`;
        writes++;
      }
    })();
    const snap = await dbctl(db.url, ['snapshot', '--dir', dir, '--name', 'under-load', '--json']);
    writing = false;
    await writer;
    expect(snap.code, snap.stderr).toBe(0);
    expect(writes).toBeGreaterThan(0);
    const header = json<{ tables: { name: string; rows: number }[] }>(snap.stdout);

    const restore = await dbctl(db.url, ['restore', 'under-load', '--dir', dir, '--json']);
    expect(restore.code, restore.stderr).toBe(0);
    for (const t of header.tables) {
      const [{ n }] = (await sql.unsafe(`select count(*)::int as n from "${t.name}"`)) as unknown as [
        { n: number },
      ];
      expect(n, t.name).toBe(t.rows);
    }
    const [{ orphans }] = (await sql`
      select count(*)::int as orphans from job_events e where not exists (select 1 from jobs j where j.id = e.job_id)`) as unknown as [
      { orphans: number },
    ];
    expect(orphans).toBe(0);
    await dbctl(db.url, ['restore', 'before', '--dir', dir]);
  });

  it('uses MESH_SNAPSHOT_DIR, then <MESH_DATA_DIR>/snapshots, with a default name', async () => {
    const data = mkdtempSync(join(tmpdir(), 'meshctl-data-'));
    try {
      const r = await meshctl(['db', 'snapshot', '--json'], {
        env: { DATABASE_URL: db.url, MESH_DATA_DIR: data },
      });
      expect(r.code, r.stderr).toBe(0);
      const { name, file } = json<{ name: string; file: string }>(r.stdout);
      expect(name).toMatch(/^mesh-\d{8}-\d{6}$/);
      expect(file).toBe(join(data, 'snapshots', `${name}.jsonl.gz`));
      const viaEnv = await meshctl(['db', 'snapshots', '--json'], {
        env: { MESH_SNAPSHOT_DIR: join(data, 'snapshots') },
      });
      expect(json<{ snapshots: { name: string }[] }>(viaEnv.stdout).snapshots.map((s) => s.name)).toEqual([
        name,
      ]);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });
});

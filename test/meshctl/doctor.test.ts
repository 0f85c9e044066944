import { randomUUID } from 'node:crypto';
import { type RegistryProcess, spawnRegistry, startMcpRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { bundledSchema, meshctl } from './support.ts';

// What this build bundles: its schema version and newest migration, and a migration from a newer release.
const { version, future } = bundledSchema();
const db = useTestDatabase();
const foreign = useTestDatabase({ migrated: false });
let sql: postgres.Sql | undefined;
const pool = () => {
  sql ??= postgres(db.url, { max: 2, onnotice: () => {} });
  return sql;
};
afterAll(async () => {
  await sql?.end({ timeout: 5 });
});

// Sweeps an hour apart, so what the test plants stays until the doctor has looked;
// the doctor is told the same interval.
const replica = (id: string) =>
  spawnRegistry({
    databaseUrl: db.url,
    replicaId: id,
    env: { MESH_REPLICA_HEARTBEAT: '200ms', MESH_SWEEP_INTERVAL: '1h', MESH_OUTAGE_GRACE: '0' },
  });

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  summary: string;
  problems: { subject: string; message: string; fix: string | null; hint: string | null }[];
}

const doctor = (r: RegistryProcess, extra: string[] = []) =>
  meshctl(['doctor', '--registry-url', r.url, '--sweep-interval', '1h', ...extra], {
    env: { DATABASE_URL: db.url },
  });
const checksOf = (stdout: string) => {
  const body = JSON.parse(stdout) as { ok: boolean; checks: Check[] };
  return {
    ok: body.ok,
    byName: Object.fromEntries(body.checks.map((c) => [c.name, c])) as Record<string, Check>,
  };
};

async function until(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((res) => setTimeout(res, 100));
  }
}

const allChecks = [
  'registry',
  'replicas',
  'schema',
  'database',
  'drain',
  'clock',
  'stale-replicas',
  'stuck-jobs',
  'orphaned-claims',
];

describe('meshctl doctor', () => {
  let r1: RegistryProcess;
  let r2: RegistryProcess;

  it('a healthy fleet of two replicas: every check ok, exit 0', async () => {
    [r1, r2] = (await Promise.all([replica('doc-1'), replica('doc-2')])) as [
      RegistryProcess,
      RegistryProcess,
    ];
    const text = await doctor(r1);
    expect(text.code, text.stdout + text.stderr).toBe(0);
    for (const line of [
      new RegExp(`^ok\\s+registry reachable\\s+.*replica doc-1, schema ${version}, ready$`, 'm'),
      /^ok\s+replicas agree on version and schema\s+2 live replicas, all on version/m,
      /^ok\s+stale replicas\s+none \(2 live, 0 stopped\)$/m,
      /^ok\s+replica clocks vs database clock\s+2 replicas within 2s/m,
    ]) {
      expect(text.stdout).toMatch(line);
    }
    expect(text.stdout).not.toMatch(/FAIL|fix:/);
    expect(text.stdout).toContain('All checks passed (9 ok).');

    const json = await doctor(r1, ['--json']);
    expect(json.code).toBe(0);
    const { ok, byName } = checksOf(json.stdout);
    expect(ok).toBe(true);
    expect(Object.keys(byName)).toEqual(allChecks);
    for (const name of allChecks)
      expect(byName[name]?.status, `${name}: ${byName[name]?.summary}`).toBe('ok');

    // Without the database: the checks that need it say so, the rest still run (jobs through the API).
    const noDb = await meshctl(['doctor', '--registry-url', r2.url, '--sweep-interval', '1h']);
    expect(noDb.code, noDb.stdout + noDb.stderr).toBe(0);
    expect(noDb.stdout).toMatch(/^skip\s+schema compatibility\s+skipped: no --database-url$/m);
    expect(noDb.stdout).toMatch(/^skip\s+replica clocks vs database clock\s+skipped: no --database-url$/m);
    expect(noDb.stdout).toMatch(/^ok\s+database reachable\s+reachable from replica doc-2 \(its \/ready\)/m);
    expect(noDb.stdout).toMatch(/^ok\s+stuck jobs .*via the registry's API/m);
  });

  it('a killed replica, a stuck job, an unhealthy agent holding a claim and a schema mismatch: exit 1, each named with its fix', async () => {
    const sql = pool();
    await r2.kill();
    await until(async () => {
      const res = await fetch(`${r1.url}/admin/replicas`).then(
        (x) => x.json() as Promise<{ replicas: { replica_id: string; stale: boolean }[] }>,
      );
      return res.replicas.some((r) => r.replica_id === 'doc-2' && r.stale);
    });
    // An owner whose lease expired two hours ago (the sweep, an hour apart, has not run).
    const stuck = randomUUID();
    await sql`insert into jobs (id, capability, status, owner_instance_id, claim_epoch, attempt_count, submitted_payload, lease_expires_at)
              values (${stuck}, 'render', 'working', 'ghost-worker', 3, 1, '{}', now() - interval '2 hours')`;
    // A live lease, but its owner went unhealthy two hours ago.
    const orphan = randomUUID();
    await sql`insert into agents (agent_id, name, status, updated_at) values ('sick-agent', 'sick', 'unhealthy', now() - interval '2 hours')`;
    await sql`insert into jobs (id, capability, status, owner_instance_id, claim_epoch, attempt_count, submitted_payload, lease_expires_at)
              values (${orphan}, 'plan', 'working', 'sick-agent', 1, 1, '{}', now() + interval '1 hour')`;
    // A newer release migrated the database while doc-1 (this build's schema) still runs; the
    // row declares no compatibility, so it counts as breaking for doc-1.
    await sql`insert into mesh_schema_migrations (name, idx, hash, applied_by)
              values (${future.name}, ${future.idx}, 'f00', 'newer registry')`;
    try {
      const text = await doctor(r1);
      expect(text.code, text.stdout + text.stderr).toBe(1);
      const out = text.stdout;
      expect(out).toMatch(/^FAIL\s+stale replicas\s+1 replica not heard from and never marked stopped/m);
      expect(out).toContain(`doc-2: last seen`);
      expect(out).toContain(`fix:  meshctl registry forget doc-2 --registry-url ${r1.url}`);
      expect(out).toMatch(/^FAIL\s+stuck jobs/m);
      expect(out).toContain(`job ${stuck}: render, owner ghost-worker: lease expired 2h`);
      expect(out).toContain(`fix:  meshctl job reclaim ${stuck} --registry-url ${r1.url}`);
      expect(out).toMatch(/^FAIL\s+unhealthy agents holding claims/m);
      expect(out).toContain(`job ${orphan}: plan: owner sick-agent is unhealthy`);
      expect(out).toContain(`fix:  meshctl job reclaim ${orphan} --registry-url ${r1.url}`);
      expect(out).toMatch(
        new RegExp(
          `^FAIL\\s+schema compatibility\\s+the database is at schema ${version + 1} \\(${future.name}\\)`,
          'm',
        ),
      );
      expect(out).toContain(
        `doc-1: runs schema ${version} but the database is at schema ${version + 1} (${future.name})`,
      );
      expect(out).toContain(`fix:  meshctl registry drain --registry-url ${r1.url} --wait`);
      expect(out).toContain(`hint: then restart doc-1 on a registry release that bundles ${future.name}`);
      expect(out).toContain('4 check(s) failed');

      const { ok, byName } = checksOf((await doctor(r1, ['--json'])).stdout);
      expect(ok).toBe(false);
      expect(Object.fromEntries(Object.entries(byName).map(([k, c]) => [k, c.status]))).toEqual({
        registry: 'ok',
        replicas: 'ok',
        schema: 'fail',
        database: 'ok',
        drain: 'ok',
        clock: 'ok',
        'stale-replicas': 'fail',
        'stuck-jobs': 'fail',
        'orphaned-claims': 'fail',
      });
      expect(byName['stale-replicas']?.problems).toEqual([
        expect.objectContaining({
          subject: 'doc-2',
          fix: `meshctl registry forget doc-2 --registry-url ${r1.url}`,
        }),
      ]);
      expect(byName['stuck-jobs']?.problems.map((p) => p.fix)).toEqual([
        `meshctl job reclaim ${stuck} --registry-url ${r1.url}`,
      ]);
      expect(byName['orphaned-claims']?.problems.map((p) => p.fix)).toEqual([
        `meshctl job reclaim ${orphan} --registry-url ${r1.url}`,
      ]);
    } finally {
      await sql`delete from mesh_schema_migrations where name = ${future.name}`;
      await sql`delete from jobs where id in (${stuck}, ${orphan})`;
      await sql`delete from agents where agent_id = 'sick-agent'`;
      await sql`delete from registry_replicas where replica_id = 'doc-2'`;
    }
  });

  it('replicas on different versions, and a drain left on one replica: exit 1 with the fixes', async () => {
    const sql = pool();
    const r3 = await replica('doc-3');
    // doc-3 claims another release (the row keeps what the replica wrote at start).
    await sql`update registry_replicas set version = '0.0.9' where replica_id = 'doc-3'`;
    const drained = await fetch(`${r1.url}/admin/drain`, { method: 'POST' });
    expect(drained.status).toBe(200);
    try {
      const { ok, byName } = checksOf((await doctor(r1, ['--json'])).stdout);
      expect(ok).toBe(false);
      expect(byName.replicas).toMatchObject({ status: 'fail' });
      expect(byName.replicas?.summary).toMatch(
        new RegExp(`doc-1 on .*; doc-3 on 0\\.0\\.9 \\(schema ${version}\\)`),
      );
      expect(byName.replicas?.problems).toEqual([
        expect.objectContaining({
          subject: 'doc-3',
          fix: `meshctl registry drain --registry-url ${r3.url} --wait`,
          hint: expect.stringMatching(/^then restart doc-3 on /),
        }),
      ]);
      expect(byName.drain).toMatchObject({
        status: 'fail',
        summary: 'mixed: doc-1 draining, doc-3 serving, and no fleet drain',
      });
      expect(byName.drain?.problems[0]?.fix).toBe(`meshctl registry resume --all --registry-url ${r1.url}`);
      expect(byName.drain?.problems[0]?.hint).toBe(
        `or, to drain everything: meshctl registry drain --all --registry-url ${r1.url}`,
      );
    } finally {
      await fetch(`${r1.url}/admin/drain`, { method: 'DELETE' });
      await r3.stop();
    }
  });

  it('exit 1 when the registry cannot be reached, exit 2 on bad flags', async () => {
    const down = await meshctl(['doctor', '--registry-url', 'http://127.0.0.1:1', '--json']);
    expect(down.code).toBe(1);
    const { byName } = checksOf(down.stdout);
    expect(byName.registry).toMatchObject({ status: 'fail', summary: 'cannot reach http://127.0.0.1:1' });
    expect(byName.schema?.summary).toBe('skipped: no --database-url');

    const bad = await meshctl(['doctor', '--registry-url', 'http://127.0.0.1:1', '--sweep-interval', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--sweep-interval must be a positive duration');
  });

  it('against the real MCP Mesh registry 3.7.1: the checks that need our extensions say what it lacks', async () => {
    const mcp = await startMcpRegistry(foreign.url);
    try {
      const r = await meshctl(['doctor', '--registry-url', mcp.url, '--database-url', foreign.url]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^ok\s+registry reachable\s+.*no replica identity: MCP Mesh 3\.7\?/m);
      for (const title of [
        'replicas agree on version and schema',
        'drain state consistent',
        'stale replicas',
      ]) {
        expect(r.stdout).toMatch(
          new RegExp(
            `^skip\\s+${title}\\s+skipped: the registry lacks replica discovery, GET /admin/replicas \\(MCP Mesh 3\\.7\\?\\)$`,
            'm',
          ),
        );
      }
      expect(r.stdout).toMatch(
        /^skip\s+schema compatibility\s+skipped: the registry lacks schema versioning \(MCP Mesh 3\.7\?\)/m,
      );
      expect(r.stdout).toMatch(/^ok\s+replica clocks vs database clock\s+1 replica within 2s/m);
      expect(r.stdout).toMatch(/^ok\s+stuck jobs .*via the registry's API/m);
    } finally {
      await mcp.stop();
    }
  });
});

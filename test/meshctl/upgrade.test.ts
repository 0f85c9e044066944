import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrationsDir, readBundledMigrations } from '@mesh/db';
import {
  freePort,
  installedRelease,
  type RegistryProcess,
  spawnRegistry,
  useTestDatabase,
} from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshctl } from './support.ts';

// A fleet of two replicas of the released 0.1.0 over one database, upgraded
// to the workspace (0.2.0) replica by replica, with meshctl upgrade check
// before and meshctl upgrade verify after. Migrations are read generically.

// Not migrated: the 0.1.0 replicas create their own schema, so whatever the
// workspace bundles beyond it is really pending, and applied by the first
// upgraded replica at boot.
const db = useTestDatabase({ migrated: false });
const work = mkdtempSync(join(tmpdir(), 'meshctl-upgrade-'));
const snapshots = join(work, 'snapshots');
const workspaceVersion = JSON.parse(
  readFileSync(new URL('../../apps/meshctl/package.json', import.meta.url), 'utf8'),
).version as string;
const bundled = readBundledMigrations();

let sql: postgres.Sql;
let oldBin: string;
const fleet = new Map<string, RegistryProcess>();

// Each replica gets an admin listener of its own (adminPort 0 would put /admin/* on the main port).
const spawnOld = async (id: string) =>
  spawnRegistry({ bin: oldBin, databaseUrl: db.url, replicaId: id, adminPort: await freePort() });
const spawnNew = async (id: string) =>
  spawnRegistry({ databaseUrl: db.url, replicaId: id, adminPort: await freePort() });
const any = () => [...fleet.values()][0] as RegistryProcess;

/** meshctl against the fleet (admin listener of one replica) and the database. */
const ctl = (args: string[], { registry = true } = {}) => {
  const r = any();
  return meshctl(
    [
      ...args,
      ...(registry ? ['--registry-url', r.url, '--admin-url', r.adminUrl as string] : []),
      '--database-url',
      db.url,
    ],
    { env: { MESH_SNAPSHOT_DIR: snapshots } },
  );
};

interface Report {
  go: boolean;
  procedure: string | null;
  procedure_reason: string;
  fleet_source: string;
  replicas: { replica_id: string; version: string; liveness: string; runs: boolean; verdict: string }[];
  pending: {
    name: string;
    compatibility: string;
    rolling_safe: boolean;
    replicas: { replica_id: string; compatible: boolean; why: string }[];
  }[];
  snapshot: { name: string; taken_now: boolean } | null;
  steps: string[];
  reasons: { code: string; message: string; fix: string | null }[];
}
interface Checks {
  ok: boolean;
  checks: {
    name: string;
    status: string;
    summary: string;
    problems: { subject: string; message: string; fix: string | null }[];
    details?: { replicas: { replica_id: string; verdict: string; unknown: string[] }[] };
  }[];
}
const byName = (c: Checks) => Object.fromEntries(c.checks.map((x) => [x.name, x]));

beforeAll(async () => {
  sql = postgres(db.url, { max: 2, onnotice: () => {} });
  oldBin = (await installedRelease('0.1.0')).registryBin;
  for (const id of ['up-1', 'up-2']) fleet.set(id, await spawnOld(id));
}, 300_000);

afterAll(async () => {
  await sql?.end({ timeout: 5 });
  rmSync(work, { recursive: true, force: true });
});

/** A copy of the workspace's migrations plus one breaking for releases before 0.2.0. */
function withBreakingMigration(): { dir: string; name: string } {
  const dir = join(work, 'drizzle-breaking');
  cpSync(migrationsDir, dir, { recursive: true });
  const journalFile = join(dir, 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalFile, 'utf8'));
  const idx = journal.entries.length;
  const name = `${String(idx).padStart(4, '0')}_test_contract`;
  journal.entries.push({ idx, version: '7', when: Date.now(), tag: name, breakpoints: true });
  writeFileSync(journalFile, JSON.stringify(journal, null, 2));
  writeFileSync(join(dir, `${name}.sql`), 'ALTER TABLE "jobs" DROP COLUMN "progress_message";\n');
  const declFile = join(dir, 'compatibility.json');
  const decl = JSON.parse(readFileSync(declFile, 'utf8'));
  decl.migrations[name] = {
    compatibility: 'breaking',
    release: '0.2.0',
    oldest_compatible: '0.2.0',
    reason: 'drops jobs.progress_message, which 0.1.0 writes',
  };
  writeFileSync(declFile, JSON.stringify(decl, null, 2));
  return { dir, name };
}

describe('meshctl upgrade check (a fleet of two 0.1.0 replicas)', () => {
  it(`--to ${workspaceVersion}: rolling; no-go without a recent snapshot, go with --snapshot, then go`, async () => {
    const first = await ctl(['upgrade', 'check', '--to', workspaceVersion, '--json']);
    expect(first.code, first.stderr).toBe(1);
    const report = JSON.parse(first.stdout) as Report;
    expect(report.go).toBe(false);
    expect(report.reasons.map((r) => r.code)).toEqual(['no_recent_snapshot']);
    expect(report.reasons[0]?.fix).toContain(`meshctl db snapshot --name before-${workspaceVersion}`);
    expect(report.procedure).toBe('rolling');
    expect(report.fleet_source).toBe('registry');
    expect(report.replicas.map((r) => [r.replica_id, r.version, r.liveness, r.runs])).toEqual([
      ['up-1', '0.1.0', 'live', true],
      ['up-2', '0.1.0', 'live', true],
    ]);
    // Whatever the workspace adds beyond 0.1.0's schema is pending, and compatible with 0.1.0.
    expect(report.pending.map((p) => p.name)).toEqual(bundled.slice(1).map((m) => m.name));
    for (const p of report.pending) {
      expect(p.rolling_safe, p.name).toBe(true);
      expect(p.replicas.map((r) => r.replica_id)).toEqual(['up-1', 'up-2']);
    }
    // Each replica addressed as the docs do: its main URL and its admin URL.
    const flagsOf = (id: string) =>
      `--registry-url ${fleet.get(id)?.url} --admin-url ${fleet.get(id)?.adminUrl}`;
    expect(report.steps).toEqual(
      expect.arrayContaining([
        `meshctl registry drain ${flagsOf('up-1')} --wait --own-claims`,
        `meshctl registry resume ${flagsOf('up-1')}`,
        `meshctl registry drain ${flagsOf('up-2')} --wait --own-claims`,
      ]),
    );
    expect(report.steps.at(-1)).toMatch(new RegExp(`^meshctl upgrade verify --to ${workspaceVersion} `));

    const withSnapshot = await ctl(['upgrade', 'check', '--to', workspaceVersion, '--snapshot']);
    expect(withSnapshot.code, withSnapshot.stdout + withSnapshot.stderr).toBe(0);
    expect(withSnapshot.stdout).toMatch(new RegExp(`^Took snapshot before-${workspaceVersion}-`, 'm'));
    expect(withSnapshot.stdout).toMatch(
      /^up-1\s+live\s+0\.1\.0\s+1\s+no\s+-\s+runs \(database at its schema\)$/m,
    );
    expect(withSnapshot.stdout).toMatch(/^Procedure: rolling: /m);
    expect(withSnapshot.stdout).toMatch(
      /^ {2}\s?1\. meshctl registry drain --registry-url .* --wait --own-claims$/m,
    );
    expect(withSnapshot.stdout).toContain(`GO: the upgrade to ${workspaceVersion} can start (rolling).`);

    // The snapshot just taken counts as recent; the fleet can also be read from the database alone.
    const again = await ctl(['upgrade', 'check', '--to', workspaceVersion, '--json'], { registry: false });
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const fromDb = JSON.parse(again.stdout) as Report;
    expect(fromDb).toMatchObject({ go: true, procedure: 'rolling', fleet_source: 'database' });
    expect(fromDb.snapshot?.name).toMatch(new RegExp(`^before-${workspaceVersion}-`));
    expect(fromDb.replicas.map((r) => r.replica_id)).toEqual(['up-1', 'up-2']);

    const tooOld = await ctl([
      'upgrade',
      'check',
      '--to',
      workspaceVersion,
      '--snapshot-max-age',
      '1ms',
      '--json',
    ]);
    expect(tooOld.code).toBe(1);
    expect(JSON.parse(tooOld.stdout).reasons[0].message).toMatch(
      /no recent snapshot .*: before-.*: taken \d+s ago/,
    );
  });

  it('a breaking migration in the target (--migrations): fleet-drain, with the replicas it breaks', async () => {
    const { dir, name } = withBreakingMigration();
    const r = await ctl(['upgrade', 'check', '--to', workspaceVersion, '--migrations', dir, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.procedure).toBe('fleet-drain');
    expect(report.procedure_reason).toBe(`${name} is breaking for up-1 (0.1.0), up-2 (0.1.0)`);
    const breaking = report.pending.find((p) => p.name === name);
    expect(breaking).toMatchObject({ compatibility: 'breaking', rolling_safe: false });
    expect(breaking?.replicas).toEqual([
      expect.objectContaining({
        replica_id: 'up-1',
        compatible: false,
        why: 'breaking for 0.1.0, needs >= 0.2.0',
      }),
      expect.objectContaining({
        replica_id: 'up-2',
        compatible: false,
        why: 'breaking for 0.1.0, needs >= 0.2.0',
      }),
    ]);
    expect(report.steps[0]).toMatch(/^meshctl registry drain --all --persist --wait --registry-url /);
    expect(report.steps).toContain(
      `meshctl registry resume --all --registry-url ${any().url} --admin-url ${any().adminUrl}`,
    );

    const text = await ctl(['upgrade', 'check', '--to', workspaceVersion, '--migrations', dir]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      new RegExp(
        `^${name}\\s+breaking \\(>= 0\\.2\\.0\\)\\s+0\\.2\\.0\\s+cannot run: up-1 \\(0\\.1\\.0\\), up-2 \\(0\\.1\\.0\\)`,
        'm',
      ),
    );
    expect(text.stdout).toMatch(/^Procedure: fleet-drain: /m);
  });

  it('another target than this meshctl: no-go telling to run its meshctl or pass --migrations; bad flags exit 2', async () => {
    const r = await ctl(['upgrade', 'check', '--to', '9.9.9', '--json']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.procedure).toBeNull();
    expect(report.reasons).toEqual([
      expect.objectContaining({
        code: 'target_migrations_unknown',
        fix: expect.stringMatching(/install meshctl 9\.9\.9 .* or pass --migrations/),
      }),
    ]);
    expect((await ctl(['upgrade', 'check', '--to', 'latest'])).code).toBe(2);
    expect((await ctl(['upgrade', 'check', '--to', '0.2.0', '--migrations', join(work, 'nope')])).code).toBe(
      2,
    );
    const down = await meshctl([
      'upgrade',
      'check',
      '--to',
      workspaceVersion,
      '--registry-url',
      'http://127.0.0.1:1',
    ]);
    expect(down.code).toBe(2);
  });
});

describe('meshctl db status and doctor: the schema verdict of every replica', () => {
  it('0.1.0 replicas at their schema, then with a compatible migration they do not know', async () => {
    const status = await ctl(['db', 'status'], { registry: false });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^up-1\s+0\.1\.0\s+1\s+-\s+runs \(database at its schema\)$/m);
    expect(status.stdout).toMatch(/^up-2\s+0\.1\.0\s+1\s+-\s+runs \(database at its schema\)$/m);

    await sql`insert into mesh_schema_migrations (name, idx, hash, applied_by, compatibility, release, reason)
              values ('0050_test_expand', 50, 'x', 'test', 'compatible', '0.9.0', 'adds a nullable column')`;
    try {
      const json = JSON.parse((await ctl(['db', 'status', '--json'], { registry: false })).stdout);
      expect(json.replicas).toEqual([
        expect.objectContaining({
          replica_id: 'up-1',
          version: '0.1.0',
          schema_version: 1,
          state: 'database_ahead_compatible',
          runs: true,
          unknown: expect.arrayContaining(['0050_test_expand']),
          verdict: 'runs (database ahead, compatible)',
        }),
        expect.objectContaining({ replica_id: 'up-2', verdict: 'runs (database ahead, compatible)' }),
      ]);
      const doctor = JSON.parse((await ctl(['doctor', '--json'])).stdout) as Checks;
      const schema = byName(doctor).schema;
      expect(schema?.status).toBe('warn');
      expect(schema?.details?.replicas.map((r) => r.verdict)).toEqual([
        'runs (database ahead, compatible)',
        'runs (database ahead, compatible)',
      ]);
      const text = await ctl(['doctor']);
      expect(text.stdout).toContain('Schema compatibility per live replica');
      expect(text.stdout).toMatch(
        /^up-1\s+0\.1\.0\s+1\s+.*0050_test_expand\s+runs \(database ahead, compatible\)$/m,
      );
    } finally {
      await sql`delete from mesh_schema_migrations where name = '0050_test_expand'`;
    }
  });
});

describe('meshctl upgrade verify', () => {
  it('fails while a 0.1.0 replica is live; passes once every replica runs the workspace registry', async () => {
    const before = await ctl(['upgrade', 'verify', '--json']);
    expect(before.code, before.stderr).toBe(1);
    const versions = byName(JSON.parse(before.stdout) as Checks).versions;
    expect(versions?.status).toBe('fail');
    expect(versions?.problems.map((p) => p.subject)).toEqual(['up-1', 'up-2']);

    // The rolling procedure, one replica at a time.
    for (const id of ['up-1', 'up-2']) {
      const old = fleet.get(id) as RegistryProcess;
      const drain = await meshctl([
        'registry',
        'drain',
        '--registry-url',
        old.adminUrl as string,
        '--wait',
        '--own-claims',
      ]);
      expect(drain.code, drain.stdout + drain.stderr).toBe(0);
      expect(drain.stdout).toContain(`All jobs claimed through ${id} drained`);
      await old.stop();
      fleet.delete(id);
      fleet.set(id, await spawnNew(id));
      if (id === 'up-1') {
        const mid = JSON.parse((await ctl(['upgrade', 'verify', '--json'])).stdout) as Checks;
        expect(mid.ok).toBe(false);
        expect(byName(mid).versions?.problems.map((p) => p.subject)).toEqual(['up-2']);
      }
    }
    const after = await ctl(['upgrade', 'verify']);
    expect(after.code, after.stdout + after.stderr).toBe(0);
    expect(after.stdout).toMatch(
      new RegExp(
        `^ok\\s+every live replica runs ${workspaceVersion.replaceAll('.', '\\.')}\\s+2 live replicas`,
        'm',
      ),
    );
    expect(after.stdout).toMatch(/^ok\s+no stale replica\s+none$/m);
    expect(after.stdout).toMatch(/^ok\s+claims flowing\s+/m);
    expect(after.stdout).toContain(`VERIFIED: the fleet runs ${workspaceVersion}.`);
    const json = JSON.parse((await ctl(['upgrade', 'verify', '--json'])).stdout) as Checks;
    expect(Object.fromEntries(json.checks.map((c) => [c.name, c.status]))).toEqual({
      versions: 'ok',
      schema: 'ok',
      'stale-replicas': 'ok',
      draining: 'ok',
      'stuck-jobs': 'ok',
      'claims-flowing': 'ok',
    });
  });

  it('fails when claims do not flow (jobs queued while a healthy provider sits idle); warns on a drain left behind', async () => {
    await sql`insert into agents (agent_id, name, status, updated_at) values ('idle-agent', 'idle', 'healthy', now())`;
    await sql`insert into agent_capabilities (agent_id, capability, function_name) values ('idle-agent', 'upgrade-test', 'f')`;
    await sql`insert into jobs (id, capability, submitted_payload, submitted_at)
              values (gen_random_uuid(), 'upgrade-test', '{}', now() - interval '10 minutes')`;
    const r = any();
    await fetch(`${r.adminUrl}/admin/drain`, { method: 'POST' });
    try {
      const res = await ctl(['upgrade', 'verify', '--json']);
      expect(res.code).toBe(1);
      const checks = byName(JSON.parse(res.stdout) as Checks);
      expect(checks['claims-flowing']).toMatchObject({ status: 'fail' });
      expect(checks['claims-flowing']?.problems[0]?.message).toMatch(
        /^1 job queued, the oldest for 10m\d*s?; 1 healthy provider holding none of them$/,
      );
      expect(checks.draining).toMatchObject({ status: 'warn', summary: `${r.replicaId} still draining` });
    } finally {
      await fetch(`${r.adminUrl}/admin/drain`, { method: 'DELETE' });
      await sql`delete from jobs where capability = 'upgrade-test'`;
      await sql`delete from agents where agent_id = 'idle-agent'`;
    }
  });

  it('db status and doctor: a breaking migration applied under the fleet, each replica "cannot run"', async () => {
    await sql`insert into mesh_schema_migrations (name, idx, hash, applied_by, compatibility, release, oldest_compatible, reason)
              values ('0051_test_contract', 51, 'y', 'test', 'breaking', '0.9.0', '0.9.0', 'drops a column')`;
    try {
      const status = await ctl(['db', 'status'], { registry: false });
      const line = new RegExp(
        `^up-1\\s+${workspaceVersion.replaceAll('.', '\\.')}\\s+${bundled.length}\\s+0051_test_contract\\s+cannot run: 0051_test_contract is breaking for ${workspaceVersion.replaceAll('.', '\\.')}, needs >= 0\\.9\\.0$`,
        'm',
      );
      expect(status.stdout).toMatch(line);
      const json = JSON.parse((await ctl(['db', 'status', '--json'], { registry: false })).stdout);
      expect(json.replicas[0]).toMatchObject({
        state: 'cannot_run',
        runs: false,
        blocking: [{ name: '0051_test_contract', oldest_compatible: '0.9.0', reason: 'drops a column' }],
      });
      const doctor = await ctl(['doctor', '--json']);
      expect(doctor.code).toBe(1);
      const schema = byName(JSON.parse(doctor.stdout) as Checks).schema;
      expect(schema?.status).toBe('fail');
      expect(schema?.problems.map((p) => p.message)).toEqual(
        expect.arrayContaining([
          expect.stringContaining(
            `cannot run: 0051_test_contract is breaking for ${workspaceVersion}, needs >= 0.9.0`,
          ),
        ]),
      );
      const verify = await ctl(['upgrade', 'verify', '--json']);
      expect(verify.code).toBe(1);
      expect(byName(JSON.parse(verify.stdout) as Checks).schema?.status).toBe('fail');
    } finally {
      // The replicas stay not ready (a breaking migration seen is sticky); this is the file's last test.
      await sql`delete from mesh_schema_migrations where name = '0051_test_contract'`;
    }
  });
});

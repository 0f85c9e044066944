// The doctor: gathers facts once (registry, fleet, database) and judges them check by check.
// The job checks live in jobs.ts (upgrade verify reuses them); the rest share the gathered
// Facts and its helpers, so they stay together here.

import { describeVersion, type SchemaStatus, schemaStatus } from '@mesh/db';
import { features as featureNames, type ReplicaInfo, type ReplicasResponse } from '@mesh/protocol';
import { CliError } from '../cli/errors.ts';
import { replicaBase } from '../cli/fleet.ts';
import type { RegistryHttp } from '../cli/http.ts';
import { formatAge } from '../cli/output.ts';
import { type Database, describeDbError, redactUrl } from '../db/connect.ts';
import { type ReplicaSchemaVerdict, replicaSchemaVerdict } from '../upgrade/compat.ts';
import {
  type JobFindings,
  jobsFromApi,
  jobsFromDatabase,
  noDb,
  orphanedClaimsCheck,
  stuckJobsCheck,
} from './jobs.ts';
import { type CheckResult, ok, type Problem, plural, problem, skip } from './result.ts';

export type { CheckResult, CheckStatus, Problem } from './result.ts';

interface HealthBody {
  version?: string;
  timestamp?: string;
  replica_id?: string;
  boot_id?: string;
  schema_version?: number;
  features?: string[];
}

interface ReadyBody {
  status: string;
  checks?: { database?: string; migrations?: string; lifecycle?: string; schema?: string; reason?: string };
}

export interface DoctorOptions {
  http: RegistryHttp;
  /** Set when --database-url / DATABASE_URL was given. */
  databaseUrl: string | undefined;
  openDatabase(url: string): Promise<Database>;
  sweepIntervalMs: number;
  maxClockSkewMs: number;
  /** Connection flags to append to printed meshctl commands (` --registry-url …`). */
  connectionFlags: string;
}

/** What the doctor learnt before judging. */
interface Facts {
  url: string;
  health: { body: HealthBody; at: number } | undefined;
  healthError: string | undefined;
  ready: ReadyBody | undefined;
  ours: boolean;
  fleet: ReplicasResponse | undefined;
  /** Why there is no fleet list (a skip reason). */
  fleetMissing: string;
  db: Database | undefined;
  dbError: string | undefined;
  schema: SchemaStatus | undefined;
  serverVersion: string | undefined;
}

const lacksSchemaVersioning =
  'skipped: the registry lacks schema versioning (MCP Mesh 3.7?): its database is not ours to judge';

/** A registry that answered but is not a mesh-registry (MCP Mesh 3.7): its database has other tables. */
const foreignRegistry = (f: Facts) => Boolean(f.health) && !f.ours;
const live = (f: ReplicasResponse) => f.replicas.filter((r) => r.live);

/** Numeric-aware version order (`0.10.0` after `0.9.1`); unparsable parts compare as text. */
function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/);
  const pb = b.split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const nx = Number(x);
    const ny = Number(y);
    const c =
      Number.isFinite(nx) && Number.isFinite(ny) && x !== '' && y !== '' ? nx - ny : x.localeCompare(y);
    if (c !== 0) return c;
  }
  return 0;
}

async function gather(o: DoctorOptions): Promise<Facts> {
  const facts: Facts = {
    url: o.http.url,
    health: undefined,
    healthError: undefined,
    ready: undefined,
    ours: false,
    fleet: undefined,
    fleetMissing: 'skipped: the registry is unreachable',
    db: undefined,
    dbError: undefined,
    schema: undefined,
    serverVersion: undefined,
  };
  const registry = (async () => {
    try {
      const res = await o.http.get('/health');
      facts.url = o.http.url;
      if (res.status !== 200) {
        facts.healthError = `GET /health answered ${res.status}: ${res.text.trim().slice(0, 200)}`;
        return;
      }
      facts.health = { body: res.json<HealthBody>(), at: Date.now() };
    } catch (err) {
      facts.healthError = (err as Error).message;
      return;
    }
    const feats = facts.health.body.features;
    facts.ours = Array.isArray(feats) && feats.includes(featureNames.replicaIdentity);
    if (facts.ours) {
      const ready = await o.http.get('/ready').catch(() => undefined);
      if (ready && (ready.status === 200 || ready.status === 503)) {
        try {
          facts.ready = ready.json<ReadyBody>();
        } catch {
          // not JSON: treated as no readiness information
        }
      }
    }
    const res = await o.http.get('/admin/replicas', { admin: true }).catch((err: Error) => err);
    if (res instanceof Error) facts.fleetMissing = `skipped: GET /admin/replicas failed: ${res.message}`;
    else if (res.status === 200) {
      try {
        facts.fleet = res.json<ReplicasResponse>();
      } catch (err) {
        facts.fleetMissing = `skipped: ${(err as Error).message}`;
      }
    } else if (res.status === 401)
      facts.fleetMissing =
        'skipped: GET /admin/replicas needs an admin token (--admin-token or MESH_ADMIN_TOKEN)';
    else if (!facts.ours)
      facts.fleetMissing =
        'skipped: the registry lacks replica discovery, GET /admin/replicas (MCP Mesh 3.7?)';
    else if (res.status === 404)
      facts.fleetMissing =
        'skipped: GET /admin/replicas answered 404: the admin routes are on a separate port; pass --admin-url';
    else facts.fleetMissing = `skipped: GET /admin/replicas answered ${res.status}`;
  })();
  const database = (async () => {
    if (!o.databaseUrl) return;
    try {
      facts.db = await o.openDatabase(o.databaseUrl);
    } catch (err) {
      facts.dbError = err instanceof CliError ? err.message : describeDbError(err);
      return;
    }
    try {
      const [row] = await facts.db.sql<{ v: string }[]>`select current_setting('server_version') as v`;
      facts.serverVersion = row?.v;
      facts.schema = await schemaStatus(facts.db.sql);
    } catch (err) {
      facts.dbError = `reading the migration ledger failed: ${describeDbError(err)}`;
    }
  })();
  await Promise.all([registry, database]);
  return facts;
}

// ─── the checks ──────────────────────────────────────────────────────────────

function registryCheck(f: Facts, o: DoctorOptions): CheckResult {
  const title = 'registry reachable';
  if (!f.health) {
    return {
      name: 'registry',
      title,
      status: 'fail',
      summary: `cannot reach ${f.url}`,
      problems: [
        problem(
          f.url,
          f.healthError ?? 'no answer',
          null,
          'Start the registry, or point --registry-url (MESH_REGISTRY_URL) at a running replica.',
        ),
      ],
    };
  }
  const h = f.health.body;
  if (!f.ours) {
    return ok(
      'registry',
      title,
      `${f.url} answers (version ${h.version ?? '?'}; no replica identity: MCP Mesh 3.7?)`,
    );
  }
  const who = `${f.url} answers: mesh-registry ${h.version}, replica ${h.replica_id}, schema ${h.schema_version}`;
  if (!f.ready) return ok('registry', title, `${who} (no /ready answer)`);
  if (f.ready.status === 'ready') return ok('registry', title, `${who}, ready`);
  const c = f.ready.checks ?? {};
  // A breaking migration applied under it (DESIGN.md §4.8): the replica is up and
  // answers, and the schema check judges (and fails) it with its fix.
  if (c.schema === 'incompatible' && o.databaseUrl && f.schema && c.database === 'ok')
    return ok(
      'registry',
      title,
      `${who}; not ready: its schema is incompatible (see schema compatibility below)`,
    );
  const why =
    c.database !== 'ok'
      ? 'it cannot reach its database'
      : c.migrations !== 'done'
        ? 'its migrations are not done'
        : c.lifecycle !== 'running'
          ? 'it is shutting down'
          : c.schema === 'incompatible'
            ? `its schema is incompatible: ${c.reason ?? 'a breaking migration was applied under it'}`
            : 'it is not ready';
  return {
    name: 'registry',
    title,
    status: 'fail',
    summary: `${who}, but not ready: ${why}`,
    problems: [
      problem(
        h.replica_id ?? f.url,
        `GET /ready: ${JSON.stringify(c)}`,
        null,
        c.database !== 'ok'
          ? "Check the replica's DATABASE_URL and that PostgreSQL is up."
          : c.schema === 'incompatible'
            ? 'Replace it with a release that runs on this schema (meshctl upgrade check shows which).'
            : 'Look at its logs; restart it if it does not become ready.',
      ),
    ],
  };
}

function replicasCheck(f: Facts): CheckResult {
  const name = 'replicas';
  const title = 'replicas agree on version and schema';
  if (!f.fleet) return skip(name, title, f.fleetMissing);
  const reps = live(f.fleet);
  if (reps.length === 0) return ok(name, title, 'no live replica recorded');
  const key = (r: ReplicaInfo) => `${r.version} (schema ${r.schema_version})`;
  const groups = new Map<string, ReplicaInfo[]>();
  for (const r of reps) groups.set(key(r), [...(groups.get(key(r)) ?? []), r]);
  if (groups.size === 1) {
    return ok(
      name,
      title,
      `${reps.length === 1 ? '1 live replica' : `${reps.length} live replicas, all`} on version ${key(reps[0] as ReplicaInfo)}`,
    );
  }
  const newest = [...reps].sort(
    (a, b) => b.schema_version - a.schema_version || compareVersions(b.version, a.version),
  )[0] as ReplicaInfo;
  return {
    name,
    title,
    status: 'fail',
    summary: `live replicas disagree: ${[...groups.entries()].map(([k, rs]) => `${rs.map((r) => r.replica_id).join(', ')} on ${k}`).join('; ')}`,
    problems: reps
      .filter((r) => key(r) !== key(newest))
      .map((r) => {
        const base = replicaBase(r);
        return problem(
          r.replica_id,
          `runs ${key(r)}; the newest in the fleet is ${key(newest)} (a rolling upgrade not finished?)`,
          base ? `meshctl registry drain --registry-url ${base} --wait` : null,
          `then restart ${r.replica_id} on ${newest.version}`,
        );
      }),
  };
}

function schemaCheck(f: Facts, o: DoctorOptions): CheckResult {
  const name = 'schema';
  const title = 'schema compatibility';
  if (!o.databaseUrl) return skip(name, title, noDb);
  if (foreignRegistry(f)) return skip(name, title, lacksSchemaVersioning);
  if (!f.schema) return skip(name, title, `skipped: ${f.dbError ?? 'the database is unreachable'}`);
  const s = f.schema;
  const dbVersion = describeVersion(s.databaseVersion, s.databaseVersionName);
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  // The fleet's schema versions: every live replica, or the one registry we reached.
  const replicas: { id: string; version: string; schema: number; base: string | null }[] = f.fleet
    ? live(f.fleet).map((r) => ({
        id: r.replica_id,
        version: r.version,
        schema: r.schema_version,
        base: replicaBase(r),
      }))
    : f.health?.body.schema_version !== undefined
      ? [
          {
            id: f.health.body.replica_id ?? f.url,
            version: f.health.body.version ?? '?',
            schema: f.health.body.schema_version,
            base: f.url,
          },
        ]
      : [];
  const verdicts = replicas.map((r) =>
    replicaSchemaVerdict({ replica_id: r.id, version: r.version, schema_version: r.schema }, s.applied),
  );
  const details = { replicas: verdicts };
  for (const [i, r] of replicas.entries()) {
    if (r.schema === s.databaseVersion) continue;
    const v = verdicts[i] as ReplicaSchemaVerdict;
    if (r.schema < s.databaseVersion) {
      const unfinished = r.base
        ? `meshctl registry drain --registry-url ${r.base} --wait --own-claims`
        : null;
      const restart = `then restart ${r.id} on a registry release that bundles ${s.databaseVersionName ?? 'them'}`;
      if (v.runs) {
        // Expand-only migrations it does not know: a rolling upgrade in progress, not a fault.
        warnings.push(
          problem(
            r.id,
            `runs schema ${r.schema} (${r.version}) but the database is at schema ${dbVersion}: ${v.verdict}`,
            unfinished,
            restart,
          ),
        );
        continue;
      }
      problems.push(
        problem(
          r.id,
          `runs schema ${r.schema} but the database is at schema ${dbVersion}: it does not know the newest migration(s); ${v.verdict}`,
          r.base ? `meshctl registry drain --registry-url ${r.base} --wait` : null,
          restart,
        ),
      );
    } else {
      const canMigrate = s.unknown.length === 0 && s.mismatched.length === 0 && s.binaryVersion >= r.schema;
      problems.push(
        problem(
          r.id,
          `runs schema ${r.schema} but the database is at schema ${dbVersion} (restored from an older snapshot?)`,
          canMigrate ? 'meshctl db migrate' : null,
          canMigrate ? null : `restart ${r.id}: a registry applies its migrations at boot`,
        ),
      );
    }
  }
  if (s.mismatched.length > 0) {
    warnings.push(
      problem(
        'meshctl',
        `migration(s) ${s.mismatched.map((m) => m.name).join(', ')} were applied with different SQL than this meshctl bundles; registries of this build would refuse to start`,
        null,
        'meshctl db status shows the details; use the meshctl of the release the fleet runs',
      ),
    );
  }
  if (s.unknown.length > 0) {
    warnings.push(
      problem(
        'meshctl',
        `the database is newer than this meshctl (it holds ${s.unknown.map((m) => m.name).join(', ')})`,
        null,
        'use a meshctl at least as new as the registry',
      ),
    );
  }
  if (s.pending.length > 0 && s.applied.length > 0) {
    warnings.push(
      problem(
        'meshctl',
        `this meshctl bundles migration(s) the database lacks (${s.pending.map((m) => m.name).join(', ')}); the first upgraded replica applies them at boot`,
        null,
        null,
      ),
    );
  }
  if (s.applied.length === 0) {
    problems.push(
      problem('database', 'the database holds no registry schema (never migrated)', 'meshctl db migrate'),
    );
  }
  if (problems.length > 0) {
    return {
      name,
      title,
      status: 'fail',
      summary: `the database is at schema ${dbVersion}; ${plural(problems.length, 'mismatch')}`,
      problems: [...problems, ...warnings],
      details,
    };
  }
  const agreeing = replicas.filter((r) => r.schema === s.databaseVersion).length;
  const who =
    replicas.length === 0
      ? 'no replica to compare'
      : agreeing < replicas.length
        ? `${agreeing} of ${replicas.length} live replicas on it, the others run on it compatibly`
        : replicas.length === 1
          ? 'the live replica agrees'
          : `${replicas.length} live replicas agree`;
  if (warnings.length > 0) {
    return {
      name,
      title,
      status: 'warn',
      summary: `the database is at schema ${dbVersion}; ${who}; this meshctl is at ${describeVersion(s.binaryVersion, s.binaryVersionName)}`,
      problems: warnings,
      details,
    };
  }
  return {
    ...ok(name, title, `the database is at schema ${dbVersion}; ${who}; so does this meshctl`),
    details,
  };
}

function databaseCheck(f: Facts, o: DoctorOptions): CheckResult {
  const name = 'database';
  const title = 'database reachable';
  if (o.databaseUrl) {
    if (f.db)
      return ok(name, title, `${redactUrl(o.databaseUrl)} answers (PostgreSQL ${f.serverVersion ?? '?'})`);
    return {
      name,
      title,
      status: 'fail',
      summary: `cannot reach ${redactUrl(o.databaseUrl)}`,
      problems: [
        problem(
          'database',
          f.dbError ?? 'no answer',
          null,
          'Check --database-url / DATABASE_URL, and that PostgreSQL is up and reachable from here.',
        ),
      ],
    };
  }
  const db = f.ready?.checks?.database;
  const who = f.health?.body.replica_id ?? f.url;
  if (db === 'ok')
    return ok(
      name,
      title,
      `reachable from replica ${who} (its /ready); pass --database-url for the direct checks`,
    );
  if (db) {
    return {
      name,
      title,
      status: 'fail',
      summary: `replica ${who} cannot reach its database (its /ready says ${db})`,
      problems: [
        problem(
          who,
          `GET /ready: database ${db}`,
          null,
          "Check that PostgreSQL is up and the replicas' DATABASE_URL.",
        ),
      ],
    };
  }
  return skip(name, title, noDb);
}

function drainCheck(f: Facts, o: DoctorOptions): CheckResult {
  const name = 'drain';
  const title = 'drain state consistent';
  if (!f.fleet) return skip(name, title, f.fleetMissing);
  const reps = live(f.fleet);
  const draining = reps.filter((r) => r.draining);
  const serving = reps.filter((r) => !r.draining);
  const ids = (rs: ReplicaInfo[]) => rs.map((r) => r.replica_id).join(', ');
  if (f.fleet.fleet_draining) {
    if (serving.length === 0) {
      return ok(
        name,
        title,
        `fleet drain in force since ${f.fleet.fleet_draining_since ?? '?'}: all ${reps.length} live replica(s) draining (lift it with meshctl registry resume --all)`,
      );
    }
    return {
      name,
      title,
      status: 'fail',
      summary: `fleet drain in force but ${ids(serving)} still hand(s) out claims`,
      problems: serving.map((r) =>
        problem(
          r.replica_id,
          'not draining although the fleet drain is in force',
          `meshctl registry drain --all${o.connectionFlags}`,
        ),
      ),
    };
  }
  if (draining.length === 0)
    return ok(name, title, `no replica draining (${plural(reps.length, 'live replica')})`);
  if (serving.length === 0) {
    return ok(
      name,
      title,
      `${reps.length === 1 ? 'the only live replica is' : `all ${reps.length} live replicas are`} draining (no fleet drain): no claims are handed out`,
    );
  }
  return {
    name,
    title,
    status: 'fail',
    summary: `mixed: ${ids(draining)} draining, ${ids(serving)} serving, and no fleet drain`,
    problems: [
      problem(
        ids(draining),
        'draining while the rest of the fleet serves (left over from an upgrade?)',
        `meshctl registry resume --all${o.connectionFlags}`,
        `or, to drain everything: meshctl registry drain --all${o.connectionFlags}`,
      ),
    ],
  };
}

async function clockCheck(f: Facts, o: DoctorOptions): Promise<CheckResult> {
  const name = 'clock';
  const title = 'replica clocks vs database clock';
  if (!o.databaseUrl) return skip(name, title, noDb);
  if (!f.db) return skip(name, title, 'skipped: the database is unreachable');
  const db = f.db;
  const targets: { id: string; base: string }[] = f.fleet
    ? live(f.fleet).flatMap((r) => (r.main_url ? [{ id: r.replica_id, base: r.main_url }] : []))
    : f.health
      ? [{ id: f.health.body.replica_id ?? f.url, base: f.url }]
      : [];
  if (targets.length === 0) return skip(name, title, 'skipped: no replica to ask');
  // Offsets from meshctl's clock, each measured at the midpoint of its round trip.
  const dbOffset = async () => {
    const t0 = Date.now();
    const [row] = await db.sql<
      { ms: number }[]
    >`select (extract(epoch from clock_timestamp()) * 1000)::float8 as ms`;
    const t1 = Date.now();
    return { offset: (row?.ms ?? 0) - (t0 + t1) / 2, error: (t1 - t0) / 2 };
  };
  const measured: { id: string; skew: number; error: number }[] = [];
  const unreachable: string[] = [];
  for (const t of targets) {
    const d = await dbOffset();
    const t0 = Date.now();
    const res = await o.http.get('/health', { base: t.base, timeoutMs: 5_000 }).catch(() => undefined);
    const t1 = Date.now();
    const ts = res?.status === 200 ? Date.parse(res.json<HealthBody>().timestamp ?? '') : Number.NaN;
    if (!Number.isFinite(ts)) {
      unreachable.push(t.id);
      continue;
    }
    measured.push({ id: t.id, skew: ts - (t0 + t1) / 2 - d.offset, error: (t1 - t0) / 2 + d.error });
  }
  const note = unreachable.length ? ` (not reachable from here: ${unreachable.join(', ')})` : '';
  if (measured.length === 0) return skip(name, title, `skipped: no replica answered${note}`);
  const bad = measured.filter((m) => Math.abs(m.skew) - m.error > o.maxClockSkewMs);
  const fmt = (ms: number) => `${ms >= 0 ? '+' : '-'}${(Math.abs(ms) / 1000).toFixed(2)}s`;
  if (bad.length === 0) {
    const worst = Math.max(...measured.map((m) => Math.abs(m.skew)));
    return ok(
      name,
      title,
      `${plural(measured.length, 'replica')} within ${o.maxClockSkewMs / 1000}s of the database (largest ${(worst / 1000).toFixed(2)}s)${note}`,
    );
  }
  return {
    name,
    title,
    status: 'fail',
    summary: `${plural(bad.length, 'replica')} off the database clock by more than ${o.maxClockSkewMs / 1000}s${note}`,
    problems: bad.map((m) =>
      problem(
        m.id,
        `clock ${fmt(m.skew)} from the database (±${(m.error / 1000).toFixed(2)}s)`,
        null,
        `sync the clock of ${m.id}'s host with NTP (e.g. chronyc makestep); leases use the database clock, logs and /health use the host's`,
      ),
    ),
  };
}

function staleCheck(f: Facts, o: DoctorOptions): CheckResult {
  const name = 'stale-replicas';
  const title = 'stale replicas';
  if (!f.fleet) return skip(name, title, f.fleetMissing);
  const stale = f.fleet.replicas.filter((r) => r.stale);
  const stopped = f.fleet.replicas.filter((r) => r.stopped_at).length;
  const counts = `${live(f.fleet).length} live, ${stopped} stopped`;
  if (stale.length === 0) return ok(name, title, `none (${counts})`);
  return {
    name,
    title,
    status: 'fail',
    summary: `${plural(stale.length, 'replica')} not heard from and never marked stopped (${counts})`,
    problems: stale.map((r) =>
      problem(
        r.replica_id,
        `last seen ${formatAge(Date.now() - Date.parse(r.last_seen_at))} ago${r.main_url ? ` at ${r.main_url}` : ''} (killed, paused or partitioned)`,
        `meshctl registry forget ${r.replica_id}${o.connectionFlags}`,
        'if it is only paused or cut off it comes back by itself; forget it once it is gone',
      ),
    ),
  };
}

/** Runs every check. Never throws for what it finds: a check that cannot run says why. */
export async function runChecks(o: DoctorOptions): Promise<CheckResult[]> {
  const f = await gather(o);
  try {
    let found: JobFindings | string;
    const api = {
      http: o.http,
      health: f.health && { timestamp: f.health.body.timestamp, at: f.health.at },
      sweepIntervalMs: o.sweepIntervalMs,
    };
    // MCP Mesh 3.7 keeps other tables: judge its jobs through its API only.
    if (foreignRegistry(f)) found = await jobsFromApi(api);
    else if (f.db && f.schema && f.schema.applied.length > 0)
      found = await jobsFromDatabase(f.db.sql, o.sweepIntervalMs);
    else if (o.databaseUrl)
      found = f.schema
        ? 'skipped: the database holds no registry schema'
        : `skipped: ${f.dbError ?? 'the database is unreachable'}`;
    else if (f.health) found = await jobsFromApi(api);
    else found = `${noDb}, and the registry is unreachable`;
    return [
      registryCheck(f, o),
      replicasCheck(f),
      schemaCheck(f, o),
      databaseCheck(f, o),
      drainCheck(f, o),
      await clockCheck(f, o),
      staleCheck(f, o),
      stuckJobsCheck(found, o),
      orphanedClaimsCheck(found, o),
    ];
  } finally {
    await f.db?.close();
  }
}

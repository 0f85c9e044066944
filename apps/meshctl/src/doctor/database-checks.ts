// The checks of the database: the schema against the fleet and this
// meshctl, reachable, and the replicas' clocks against the database's.

import { describeVersion, type SchemaStatus } from '@mesh/db';
import { replicaBase } from '../cli/fleet.ts';
import { redactUrl } from '../db/connect.ts';
import { type ReplicaSchemaVerdict, replicaSchemaVerdict } from '../upgrade/compat.ts';
import {
  type DoctorOptions,
  type Facts,
  foreignRegistry,
  type HealthBody,
  lacksSchemaVersioning,
  live,
} from './facts.ts';
import { noDb } from './jobs.ts';
import { type CheckResult, ok, type Problem, plural, problem, skip } from './result.ts';

/** A replica's schema, as the fleet list (or the one registry reached) gives it. */
interface FleetSchema {
  id: string;
  version: string;
  schema: number;
  base: string | null;
}

/** Whether the database's schema suits every live replica and this meshctl (DESIGN.md §4.8). */
export function schemaCheck(f: Facts, o: DoctorOptions): CheckResult {
  const name = 'schema';
  const title = 'schema compatibility';
  if (!o.databaseUrl) return skip(name, title, noDb);
  if (foreignRegistry(f)) return skip(name, title, lacksSchemaVersioning);
  if (!f.schema) return skip(name, title, `skipped: ${f.dbError ?? 'the database is unreachable'}`);
  const s = f.schema;
  const dbVersion = describeVersion(s.databaseVersion, s.databaseVersionName);
  const replicas = fleetSchemas(f);
  const verdicts = replicas.map((r) =>
    replicaSchemaVerdict({ replica_id: r.id, version: r.version, schema_version: r.schema }, s.applied),
  );
  const details = { replicas: verdicts };
  const { problems, warnings } = replicaMismatches(s, dbVersion, replicas, verdicts);
  warnings.push(...ledgerWarnings(s));
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

/** The fleet's schema versions: every live replica, or the one registry we reached. */
function fleetSchemas(f: Facts): FleetSchema[] {
  return f.fleet
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
}

/**
 * Each replica whose schema is not the database's: behind but able to run
 * (a rolling upgrade under way) is a warning; behind and unable, or ahead of
 * the database, is a problem.
 */
function replicaMismatches(
  s: SchemaStatus,
  dbVersion: string,
  replicas: FleetSchema[],
  verdicts: ReplicaSchemaVerdict[],
): { problems: Problem[]; warnings: Problem[] } {
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
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
  return { problems, warnings };
}

/** Where the ledger and this meshctl's migrations part: other SQL, a newer database, migrations pending. */
function ledgerWarnings(s: SchemaStatus): Problem[] {
  const warnings: Problem[] = [];
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
  return warnings;
}

export function databaseCheck(f: Facts, o: DoctorOptions): CheckResult {
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

export async function clockCheck(f: Facts, o: DoctorOptions): Promise<CheckResult> {
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

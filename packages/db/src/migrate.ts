import postgres from 'postgres';
import {
  type BundledMigration,
  type Compatibility,
  describeVersion,
  readBundledMigrations,
  releaseAtLeast,
} from './migrations.ts';

/** The ledger of applied migrations. Not part of schema.ts: the migrator owns it. */
export const ledgerTable = 'mesh_schema_migrations';

/**
 * Key of the session-level advisory lock that serialises migrations across
 * replicas (an arbitrary constant: "mesh" in ASCII, then 1).
 */
export const migrationLockKey = 0x6d657368_00000001n;

export type SchemaErrorKind = 'breaking_migration' | 'hash_mismatch' | 'lock_timeout' | 'verify_failed';

/** A database this binary must not run against, or cannot migrate now. */
export class SchemaError extends Error {
  override readonly name = 'SchemaError';
  constructor(
    readonly kind: SchemaErrorKind,
    message: string,
    readonly databaseVersion?: string,
    readonly binaryVersion?: string,
    /** For `breaking_migration`: the migration that blocks, and the oldest release that runs on it. */
    readonly blocking?: { name: string; oldestCompatible: string | null; reason: string | null },
  ) {
    super(message);
  }
}

export interface AppliedMigration {
  name: string;
  idx: number;
  hash: string;
  appliedAt: Date;
  appliedBy: string | null;
  /** As declared by the binary that applied it; null in a ledger written before declarations. */
  compatibility: Compatibility | null;
  release: string | null;
  oldestCompatible: string | null;
  reason: string | null;
}

/** What the database holds compared with what this binary bundles. */
export interface SchemaStatus {
  bundled: BundledMigration[];
  applied: AppliedMigration[];
  /** Bundled but not applied, in journal order. */
  pending: BundledMigration[];
  /** Applied but unknown to this binary (the database is newer). */
  unknown: AppliedMigration[];
  /**
   * The unknown migrations this binary must not run on: breaking ones whose
   * `oldest_compatible` is newer than `binaryRelease` (all breaking ones when
   * the release is not given). The rest of `unknown` is safe to run on.
   */
  blocking: AppliedMigration[];
  /** This binary's release (e.g. `0.2.0`), when the caller said. */
  binaryRelease: string | undefined;
  /** Applied under a known name but with other SQL. */
  mismatched: AppliedMigration[];
  /** Schema version of the database: the highest applied idx + 1 (0 when empty). */
  databaseVersion: number;
  databaseVersionName: string | undefined;
  binaryVersion: number;
  binaryVersionName: string | undefined;
}

type Sql = postgres.Sql;

async function ensureLedger(sql: Sql): Promise<void> {
  await sql.unsafe(`
    create table if not exists ${ledgerTable} (
      name text primary key,
      idx integer not null,
      hash text not null,
      applied_at timestamptz not null default now(),
      applied_by text
    )`);
  // Each migration's declaration, recorded when it is applied, so that a binary
  // that does not know the migration can tell whether it may run on it. Only
  // when missing: ALTER TABLE takes an exclusive lock even when it changes
  // nothing, and running replicas read the ledger every heartbeat.
  const [has] = await sql<{ n: number }[]>`
    select count(*)::int as n from information_schema.columns
    where table_schema = current_schema() and table_name = ${ledgerTable}
      and column_name in ('compatibility', 'release', 'oldest_compatible', 'reason')`;
  if (has?.n === 4) return;
  await sql.unsafe(`
    alter table ${ledgerTable}
      add column if not exists compatibility text,
      add column if not exists release text,
      add column if not exists oldest_compatible text,
      add column if not exists reason text`);
}

async function readApplied(sql: Sql): Promise<AppliedMigration[]> {
  const exists = await sql<{ t: string | null }[]>`select to_regclass(${ledgerTable}) as t`;
  if (!exists[0]?.t) return [];
  // to_jsonb(m) reads the declaration columns when they exist (a ledger made
  // before them has none) without naming them in SQL.
  const rows = await sql<{ m: Record<string, unknown> }[]>`
    select to_jsonb(m) as m from ${sql(ledgerTable)} m order by idx, name`;
  const text = (v: unknown) => (typeof v === 'string' ? v : null);
  return rows.map(({ m }) => ({
    name: String(m.name),
    idx: Number(m.idx),
    hash: String(m.hash),
    appliedAt: new Date(String(m.applied_at)),
    appliedBy: text(m.applied_by),
    compatibility:
      m.compatibility === 'compatible' || m.compatibility === 'breaking' ? m.compatibility : null,
    release: text(m.release),
    oldestCompatible: text(m.oldest_compatible),
    reason: text(m.reason),
  }));
}

/**
 * Whether a binary that knows `knownNames` (release `release`) may run on a
 * database whose ledger is `applied`: the unknown migrations it must not run
 * on (DESIGN.md §4.8). A migration with no declaration counts as breaking.
 */
export function blockingMigrations(
  applied: AppliedMigration[],
  isKnown: (m: AppliedMigration) => boolean,
  release: string | undefined,
): AppliedMigration[] {
  return applied.filter(
    (m) =>
      !isKnown(m) &&
      m.compatibility !== 'compatible' &&
      !(release && m.oldestCompatible && releaseAtLeast(release, m.oldestCompatible)),
  );
}

function compare(
  bundled: BundledMigration[],
  applied: AppliedMigration[],
  binaryRelease?: string,
): SchemaStatus {
  const byName = new Map(bundled.map((m) => [m.name, m]));
  const appliedNames = new Set(applied.map((m) => m.name));
  const top = applied.reduce<AppliedMigration | undefined>(
    (a, m) => (!a || m.idx > a.idx ? m : a),
    undefined,
  );
  const last = bundled.at(-1);
  return {
    bundled,
    applied,
    pending: bundled.filter((m) => !appliedNames.has(m.name)),
    unknown: applied.filter((m) => !byName.has(m.name)),
    blocking: blockingMigrations(applied, (m) => byName.has(m.name), binaryRelease),
    binaryRelease,
    mismatched: applied.filter((m) => byName.has(m.name) && byName.get(m.name)?.hash !== m.hash),
    databaseVersion: top ? top.idx + 1 : 0,
    databaseVersionName: top?.name,
    binaryVersion: last ? last.idx + 1 : 0,
    binaryVersionName: last?.name,
  };
}

/** Reads the ledger and compares it with the bundled migrations; changes nothing. */
export async function schemaStatus(
  sql: Sql,
  bundled = readBundledMigrations(),
  binaryRelease?: string,
): Promise<SchemaStatus> {
  return compare(bundled, await readApplied(sql), binaryRelease);
}

/** The reads of `schemaStatus` without a bundle: every applied migration, with its declaration. */
export const appliedMigrations = readApplied;

function refuseIfIncompatible(status: SchemaStatus): void {
  const db = describeVersion(status.databaseVersion, status.databaseVersionName);
  const bin = describeVersion(status.binaryVersion, status.binaryVersionName);
  const [first] = status.blocking;
  if (first) {
    const release = status.binaryRelease ? ` (release ${status.binaryRelease})` : '';
    const needs = first.oldestCompatible ?? first.release;
    throw new SchemaError(
      'breaking_migration',
      `the database is at schema version ${db} but this binary${release} knows schema version ${bin} at most, ` +
        `and migration ${first.name} is breaking for it` +
        `${first.reason ? ` (${first.reason})` : first.compatibility === null ? ' (it declares no compatibility)' : ''}. ` +
        `Refusing to start: run ${needs ? `release ${needs} or newer` : 'a release at least as new as the one that migrated this database'}, ` +
        'or restore the snapshot taken before the upgrade (meshctl db restore).',
      db,
      bin,
      { name: first.name, oldestCompatible: needs, reason: first.reason },
    );
  }
  if (status.mismatched.length > 0) {
    throw new SchemaError(
      'hash_mismatch',
      `migration(s) ${status.mismatched.map((m) => m.name).join(', ')} were applied with different SQL than this binary bundles ` +
        `(database schema version ${db}, binary ${bin}). Refusing to start: the database and this build disagree on history.`,
      db,
      bin,
    );
  }
}

export interface MigrateOptions {
  /** How long to wait for another replica's migration lock, in ms. */
  lockTimeoutMs?: number;
  /** Recorded in the ledger: who applied each migration. */
  appliedBy?: string;
  /** Migrations to apply; defaults to the bundled ones. */
  migrations?: BundledMigration[];
  /** Called once per applied migration. */
  onApply?: (m: BundledMigration) => void;
  /**
   * This binary's release (e.g. `0.2.0`): a breaking migration it does not
   * know still lets it run when its `oldest_compatible` is not newer.
   */
  release?: string;
  connectTimeoutSeconds?: number;
}

export interface MigrateResult {
  applied: string[];
  /** The newest schema version this binary knows (its bundle). */
  schemaVersion: number;
  schemaVersionName: string | undefined;
  /** The database's schema version: higher than `schemaVersion` when it is ahead. */
  databaseVersion: number;
  databaseVersionName: string | undefined;
  /** Migrations this binary does not know but may run on (all compatible with it). */
  ahead: AppliedMigration[];
}

/**
 * Brings the database to this binary's schema, safely when many replicas boot
 * at once (DESIGN.md §4.8):
 * - a session advisory lock on a dedicated connection, with `lock_timeout`, so
 *   one replica migrates while the others wait (or give up with a clear error);
 * - each migration applied once, in its own transaction with its ledger row;
 * - unlike drizzle's migrator, which applies only migrations newer than the
 *   last one recorded (silently skipping one merged out of order), every
 *   bundled migration missing from the ledger is applied, by name;
 * - a database holding migrations this binary does not know is run on when each
 *   is compatible with it (declared `compatible`, or `breaking` only for
 *   releases older than this one), and refused otherwise, naming the breaking
 *   migration and the oldest release that can run there; a known migration
 *   applied with other SQL is refused;
 * - afterwards the ledger is checked against the bundle (names and hashes).
 */
export async function migrate(databaseUrl: string, options: MigrateOptions = {}): Promise<MigrateResult> {
  const bundled = options.migrations ?? readBundledMigrations();
  const lockTimeoutMs = options.lockTimeoutMs ?? 60_000;
  const sql = postgres(databaseUrl, {
    max: 1,
    onnotice: () => {},
    connect_timeout: options.connectTimeoutSeconds ?? 10,
    connection: { application_name: 'mesh-registry:migrate' },
  });
  try {
    await sql.unsafe(`set lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`);
    try {
      await sql`select pg_advisory_lock(${migrationLockKey.toString()}::bigint)`;
    } catch (err) {
      if ((err as { code?: string }).code === '55P03') {
        throw new SchemaError(
          'lock_timeout',
          `timed out after ${lockTimeoutMs} ms waiting for the migration lock held by another registry replica`,
        );
      }
      throw err;
    }
    try {
      await ensureLedger(sql);
      const before = compare(bundled, await readApplied(sql), options.release);
      refuseIfIncompatible(before);
      const applied: string[] = [];
      for (const m of before.pending) {
        await sql.begin(async (tx) => {
          for (const statement of m.statements) await tx.unsafe(statement);
          await tx`insert into ${tx(ledgerTable)}
                     (name, idx, hash, applied_by, compatibility, release, oldest_compatible, reason)
                   values (${m.name}, ${m.idx}, ${m.hash}, ${options.appliedBy ?? null}, ${m.compatibility},
                           ${m.release}, ${m.oldestCompatible ?? null}, ${m.reason})`;
        });
        applied.push(m.name);
        options.onApply?.(m);
      }
      const after = compare(bundled, await readApplied(sql), options.release);
      refuseIfIncompatible(after);
      if (after.pending.length > 0) {
        throw new SchemaError(
          'verify_failed',
          `after migrating, the ledger still lacks ${after.pending.map((m) => m.name).join(', ')}`,
        );
      }
      return {
        applied,
        schemaVersion: after.binaryVersion,
        schemaVersionName: after.binaryVersionName,
        databaseVersion: after.databaseVersion,
        databaseVersionName: after.databaseVersionName,
        ahead: after.unknown,
      };
    } finally {
      await sql`select pg_advisory_unlock(${migrationLockKey.toString()}::bigint)`.catch(() => {});
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

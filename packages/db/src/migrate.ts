import postgres from 'postgres';
import { type BundledMigration, describeVersion, readBundledMigrations } from './migrations.ts';

/** The ledger of applied migrations. Not part of schema.ts: the migrator owns it. */
export const ledgerTable = 'mesh_schema_migrations';

/**
 * Key of the session-level advisory lock that serialises migrations across
 * replicas (an arbitrary constant: "mesh" in ASCII, then 1).
 */
export const migrationLockKey = 0x6d657368_00000001n;

export type SchemaErrorKind = 'unknown_migration' | 'hash_mismatch' | 'lock_timeout' | 'verify_failed';

/** A database this binary must not run against, or cannot migrate now. */
export class SchemaError extends Error {
  override readonly name = 'SchemaError';
  constructor(
    readonly kind: SchemaErrorKind,
    message: string,
    readonly databaseVersion?: string,
    readonly binaryVersion?: string,
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
}

/** What the database holds compared with what this binary bundles. */
export interface SchemaStatus {
  bundled: BundledMigration[];
  applied: AppliedMigration[];
  /** Bundled but not applied, in journal order. */
  pending: BundledMigration[];
  /** Applied but unknown to this binary (the database is newer). */
  unknown: AppliedMigration[];
  /** Applied under a known name but with other SQL. */
  mismatched: AppliedMigration[];
  /** Schema version of the database: the highest applied idx + 1 (0 when empty). */
  databaseVersion: number;
  databaseVersionName: string | undefined;
  binaryVersion: number;
  binaryVersionName: string | undefined;
}

type Sql = postgres.Sql;

const ensureLedger = (sql: Sql) =>
  sql.unsafe(`
    create table if not exists ${ledgerTable} (
      name text primary key,
      idx integer not null,
      hash text not null,
      applied_at timestamptz not null default now(),
      applied_by text
    )`);

async function readApplied(sql: Sql): Promise<AppliedMigration[]> {
  const exists = await sql<{ t: string | null }[]>`select to_regclass(${ledgerTable}) as t`;
  if (!exists[0]?.t) return [];
  const rows = await sql<
    { name: string; idx: number; hash: string; applied_at: Date; applied_by: string | null }[]
  >`
    select name, idx, hash, applied_at, applied_by from ${sql(ledgerTable)} order by idx, name`;
  return rows.map((r) => ({
    name: r.name,
    idx: r.idx,
    hash: r.hash,
    appliedAt: r.applied_at,
    appliedBy: r.applied_by,
  }));
}

function compare(bundled: BundledMigration[], applied: AppliedMigration[]): SchemaStatus {
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
    mismatched: applied.filter((m) => byName.has(m.name) && byName.get(m.name)?.hash !== m.hash),
    databaseVersion: top ? top.idx + 1 : 0,
    databaseVersionName: top?.name,
    binaryVersion: last ? last.idx + 1 : 0,
    binaryVersionName: last?.name,
  };
}

/** Reads the ledger and compares it with the bundled migrations; changes nothing. */
export async function schemaStatus(sql: Sql, bundled = readBundledMigrations()): Promise<SchemaStatus> {
  return compare(bundled, await readApplied(sql));
}

function refuseIfIncompatible(status: SchemaStatus): void {
  const db = describeVersion(status.databaseVersion, status.databaseVersionName);
  const bin = describeVersion(status.binaryVersion, status.binaryVersionName);
  if (status.unknown.length > 0) {
    throw new SchemaError(
      'unknown_migration',
      `the database is at schema version ${db} but this binary knows schema version ${bin} at most; ` +
        `it holds migration(s) this binary does not know: ${status.unknown.map((m) => m.name).join(', ')}. ` +
        'Refusing to start: run a registry at least as new as the one that migrated this database.',
      db,
      bin,
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
  connectTimeoutSeconds?: number;
}

export interface MigrateResult {
  applied: string[];
  schemaVersion: number;
  schemaVersionName: string | undefined;
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
 * - a database holding a migration this binary does not know, or one whose SQL
 *   differs, is refused;
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
      const before = compare(bundled, await readApplied(sql));
      refuseIfIncompatible(before);
      const applied: string[] = [];
      for (const m of before.pending) {
        await sql.begin(async (tx) => {
          for (const statement of m.statements) await tx.unsafe(statement);
          await tx`insert into ${tx(ledgerTable)} (name, idx, hash, applied_by)
                   values (${m.name}, ${m.idx}, ${m.hash}, ${options.appliedBy ?? null})`;
        });
        applied.push(m.name);
        options.onApply?.(m);
      }
      const after = compare(bundled, await readApplied(sql));
      refuseIfIncompatible(after);
      if (after.pending.length > 0 || after.applied.length !== bundled.length) {
        throw new SchemaError(
          'verify_failed',
          `after migrating, the ledger holds ${after.applied.length} migration(s) but this binary bundles ${bundled.length}`,
        );
      }
      return { applied, schemaVersion: after.binaryVersion, schemaVersionName: after.binaryVersionName };
    } finally {
      await sql`select pg_advisory_unlock(${migrationLockKey.toString()}::bigint)`.catch(() => {});
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

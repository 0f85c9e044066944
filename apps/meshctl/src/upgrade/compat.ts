import {
  type AppliedMigration,
  type BundledMigration,
  blockingMigrations,
  type Compatibility,
  releaseAtLeast,
} from '@mesh/db';

// Which registry binaries can run on which schema (DESIGN.md §4.8), judged per
// replica from what it records of itself: its release and its schema version
// (the number of migrations it knows, so it knows exactly the migrations with
// idx < schema_version). Pure functions: `db status`, `doctor` and `upgrade`
// all judge with these.

/** What a replica records of itself (a row of `registry_replicas`, or of `GET /admin/replicas`). */
export interface ReplicaIdentity {
  replica_id: string;
  version: string;
  schema_version: number;
}

export type ReplicaSchemaState =
  /** It knows every applied migration (and the database knows every migration it knows). */
  | 'at_schema'
  /** The database holds migrations it does not know, all compatible with its release. */
  | 'database_ahead_compatible'
  /** The database holds a migration that is breaking for its release. */
  | 'cannot_run'
  /** It knows migrations the database lacks (restored from an older snapshot under it?). */
  | 'database_behind';

export interface BlockingMigration {
  name: string;
  /** The oldest release that runs on it; null when the ledger has no declaration. */
  oldest_compatible: string | null;
  reason: string | null;
}

/** The per-replica schema verdict of `db status`, `doctor` and `upgrade check` (JSON: `replicas[]`). */
export interface ReplicaSchemaVerdict extends ReplicaIdentity {
  state: ReplicaSchemaState;
  /** Whether this release can run on the database as it is. */
  runs: boolean;
  /** Applied migrations it does not know, in ledger order. */
  unknown: string[];
  /** The unknown ones that are breaking for its release. */
  blocking: BlockingMigration[];
  /** One sentence for people, e.g. `runs (database ahead, compatible)`. */
  verdict: string;
}

/** `cannot run: 0002_x is breaking for 0.1.0, needs >= 0.2.0` */
function cannotRun(version: string, b: BlockingMigration): string {
  return b.oldest_compatible
    ? `cannot run: ${b.name} is breaking for ${version}, needs >= ${b.oldest_compatible}`
    : `cannot run: ${b.name} is breaking for ${version} (it declares no compatibility)`;
}

/**
 * Whether a replica can run on a database whose ledger is `applied`: every
 * applied migration it does not know must be compatible with its release.
 *
 * @example
 *   replicaSchemaVerdict({ replica_id: 'a', version: '0.1.0', schema_version: 1 }, applied).verdict;
 *   // 'runs (database ahead, compatible)'
 */
export function replicaSchemaVerdict(r: ReplicaIdentity, applied: AppliedMigration[]): ReplicaSchemaVerdict {
  const base = { replica_id: r.replica_id, version: r.version, schema_version: r.schema_version };
  const knows = (m: AppliedMigration) => m.idx < r.schema_version;
  const unknown = applied.filter((m) => !knows(m)).map((m) => m.name);
  const blocking = blockingMigrations(applied, knows, r.version).map((m) => ({
    name: m.name,
    oldest_compatible: m.oldestCompatible ?? (m.compatibility === 'breaking' ? m.release : null),
    reason: m.reason,
  }));
  const [first] = blocking;
  if (first)
    return {
      ...base,
      state: 'cannot_run',
      runs: false,
      unknown,
      blocking,
      verdict: cannotRun(r.version, first),
    };
  const databaseVersion = applied.reduce((n, m) => Math.max(n, m.idx + 1), 0);
  if (r.schema_version > databaseVersion) {
    return {
      ...base,
      state: 'database_behind',
      runs: false,
      unknown,
      blocking,
      verdict: `database behind: it knows schema ${r.schema_version}, the database is at ${databaseVersion} (restored under it?); restart it to migrate`,
    };
  }
  if (unknown.length > 0)
    return {
      ...base,
      state: 'database_ahead_compatible',
      runs: true,
      unknown,
      blocking,
      verdict: 'runs (database ahead, compatible)',
    };
  return {
    ...base,
    state: 'at_schema',
    runs: true,
    unknown,
    blocking,
    verdict: 'runs (database at its schema)',
  };
}

/** One release's verdict on a migration it may not know. */
export interface MigrationFit {
  compatible: boolean;
  /** Why, in a few words: `knows it`, `compatible`, `0.1.0 < oldest_compatible 0.2.0`. */
  why: string;
}

/**
 * Whether a binary of `version` that knows `schemaVersion` migrations can run
 * once `m` is applied: it knows it, or `m` is compatible, or `m` is breaking
 * only for releases older than `version`.
 */
export function migrationFit(
  m: { idx: number; compatibility: Compatibility; oldestCompatible?: string; release: string },
  version: string,
  schemaVersion: number,
): MigrationFit {
  if (m.idx < schemaVersion) return { compatible: true, why: 'knows it' };
  if (m.compatibility === 'compatible') return { compatible: true, why: 'compatible' };
  const oldest = m.oldestCompatible ?? m.release;
  if (releaseAtLeast(version, oldest))
    return { compatible: true, why: `${version} >= oldest_compatible ${oldest}` };
  return { compatible: false, why: `breaking for ${version}, needs >= ${oldest}` };
}

/** A migration the target release applies, judged against the running fleet and the agents. */
export interface PendingMigrationVerdict {
  name: string;
  idx: number;
  compatibility: Compatibility;
  release: string;
  oldest_compatible: string | null;
  reason: string;
  /** Every live replica: can it keep running once this is applied? */
  replicas: (MigrationFit & { replica_id: string; version: string })[];
  /**
   * The oldest agent SDK version seen (null: no agent reports one). Agents
   * reach the database only through the registry, so this is advice: a
   * breaking migration whose `oldest_compatible` is newer than the SDK is
   * worth reading the release notes for.
   */
  sdk: (MigrationFit & { oldest: string }) | null;
  /** Compatible with every live replica: a rolling upgrade can apply it. */
  rolling_safe: boolean;
}

export function pendingMigrationVerdicts(
  pending: BundledMigration[],
  replicas: ReplicaIdentity[],
  oldestSdk: string | null,
): PendingMigrationVerdict[] {
  return pending.map((m) => {
    const fits = replicas.map((r) => ({
      replica_id: r.replica_id,
      version: r.version,
      ...migrationFit(m, r.version, r.schema_version),
    }));
    return {
      name: m.name,
      idx: m.idx,
      compatibility: m.compatibility,
      release: m.release,
      oldest_compatible: m.oldestCompatible ?? null,
      reason: m.reason,
      replicas: fits,
      // An agent knows no migration: it is judged as a binary of schema 0.
      sdk: oldestSdk ? { oldest: oldestSdk, ...migrationFit(m, oldestSdk, 0) } : null,
      rolling_safe: fits.every((f) => f.compatible),
    };
  });
}

/** The oldest of some release versions (null for none). */
export function oldestRelease(versions: string[]): string | null {
  return versions.reduce<string | null>((a, v) => (a === null || !releaseAtLeast(v, a) ? v : a), null);
}

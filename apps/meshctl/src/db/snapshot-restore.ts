// `meshctl db restore`: a snapshot back into the database, in one
// transaction, as a list of phases (restoreSnapshot reads as that list).

import {
  ledgerTable,
  migrationLockKey,
  readBundledMigrations,
  registryTables,
  type Sql,
  schemaStatus,
} from '@mesh/db';
import { CliError } from '../cli/errors.ts';
import { columnsOf, existingTables, quoteIdent, type Tx } from './catalog.ts';
import { describeDiff, diffSchemas, liveReplicas, schemasEqual } from './snapshot.ts';
import { checkReplicaRow, checkSnapshotLedger } from './snapshot-checks.ts';
import { readSnapshotRows, type SnapshotHeader, type SnapshotTable } from './snapshot-file.ts';

export interface RestoreOptions {
  file: string;
  force: boolean;
  /**
   * Take the fleet drain from the snapshot. Without it the database's current
   * fleet drain is kept: a restore never lifts (or sets) a fleet drain silently.
   */
  resetDrain?: boolean;
  warn(text: string): void;
  /** Called once per table restored. */
  onTable?(table: string, rows: number): void;
}

export interface RestoreResult {
  header: SnapshotHeader;
  tables: { name: string; rows: number }[];
  totalRows: number;
  /** Checks overridden by --force, one line each. */
  forced: string[];
  /** Whether the migration ledger was restored (only when the schemas are equal). */
  ledgerRestored: boolean;
  /** The fleet drain before the restore, in the snapshot, and what the database holds now. */
  fleetDrain: {
    before: FleetDrainSetting;
    snapshot: FleetDrainSetting;
    after: FleetDrainSetting;
    kept: boolean;
  };
}

/** `registry_settings.fleet_drain`: absent is "no fleet drain". */
export interface FleetDrainSetting {
  draining: boolean;
  since: string | null;
}

const fleetDrainOf = async (tx: Tx, present: boolean): Promise<FleetDrainSetting> => {
  if (!present) return { draining: false, since: null };
  const [row] = await tx<{ value: FleetDrainSetting }[]>`
    select value from registry_settings where key = 'fleet_drain'`;
  return { draining: Boolean(row?.value?.draining), since: row?.value?.since ?? null };
};

const batchRows = 2_000;
const batchBytes = 4 * 1024 * 1024;

type SnapshotRows = ReturnType<typeof readSnapshotRows>;

/** Where a snapshot table's rows go: the columns both sides have, and the identity sequences to move. */
type Targets = Map<string, { columns: string; sequences: { column: string; sequence: string }[] }>;

/**
 * Restores a snapshot in one transaction: truncates the registry tables,
 * inserts the snapshot's rows (`json_populate_recordset`, so every type comes
 * back as PostgreSQL wrote it), moves identity sequences past the restored
 * ids, checks the row counts, commits. Any failure rolls everything back.
 *
 * Refused (exit 1, nothing changed) unless `force`:
 * - the snapshot's applied migrations (names and hashes) differ from the database's;
 * - a registry replica is running on the database (`registry_replicas`: not
 *   stopped, seen within 30 s), draining or not: restore rewrites jobs, agents
 *   and the replicas' own rows under them.
 * Forced across schemas, the ledger is kept (it describes the tables as they
 * are), only the columns both sides have are restored, and the rest is reported.
 * Refused whatever `force` says (snapshot-checks.ts): a ledger that disagrees
 * with the header or with this meshctl's migrations, a replica seen after the
 * snapshot was taken.
 */
export async function restoreSnapshot(sql: Sql, options: RestoreOptions): Promise<RestoreResult> {
  const rows = readSnapshotRows(options.file);
  const first = await rows.next();
  if (first.done || first.value.kind !== 'header')
    throw new CliError(`${options.file} has no snapshot header`);
  const header = first.value.header;
  try {
    // Before the database is touched: the file's ledger rows against its header
    // and against the migrations this meshctl bundles (snapshot-checks.ts).
    await checkSnapshotLedger(options.file, header, readBundledMigrations());
    return (await sql.begin(async (txSql) => {
      const tx = txSql as unknown as Tx;
      await lockOutMigrations(tx);
      const { sameSchema, refusals } = await restoreRefusals(tx, header);
      const forced = overrideRefusals(refusals, options);

      // What to empty and fill: the registry tables this meshctl knows (schema.ts) that
      // the database has, never a table merely named in the file. The ledger only when
      // the schemas are equal: it must go on describing the tables as they are.
      const present = await existingTables(
        tx,
        sameSchema ? [ledgerTable, ...registryTables] : registryTables,
      );
      const presentSet = new Set(present);
      const settings = presentSet.has('registry_settings');
      const drainBefore = await fleetDrainOf(tx, settings);
      if (present.length > 0) {
        await tx.unsafe(`truncate table ${present.map(quoteIdent).join(', ')}`);
      }

      const targets = await restoreTargets(tx, header, presentSet, options);
      const restored = await loadRows(tx, rows, header, targets, options);
      await fixSequencesAndCheckCounts(tx, header, restored, targets);
      if (presentSet.has('registry_replicas')) await clampReplicaClocks(tx, options);
      const fleetDrain = await keepFleetDrain(tx, settings, drainBefore, options);
      return {
        fleetDrain,
        header,
        tables: restored,
        totalRows: restored.reduce((a, t) => a + t.rows, 0),
        forced,
        ledgerRestored: sameSchema && restored.some((t) => t.name === ledgerTable),
      };
    })) as RestoreResult;
  } finally {
    await rows.return(undefined);
  }
}

/** Takes the migration lock for the transaction, and bounds every lock wait after it. */
async function lockOutMigrations(tx: Tx): Promise<void> {
  // A replica booting now would migrate under the same lock: never interleave with it.
  const [lock] = await tx<{ ok: boolean }[]>`
    select pg_try_advisory_xact_lock(${migrationLockKey.toString()}::bigint) as ok`;
  if (!lock?.ok) {
    throw new CliError(
      'a registry replica is migrating this database right now; nothing was restored',
      1,
      'Try again in a moment.',
    );
  }
  await tx`set local lock_timeout = '30s'`;
}

/** Why the restore should not go ahead (schemas differ, newer database, replicas running), each with its fix. */
async function restoreRefusals(
  tx: Tx,
  header: SnapshotHeader,
): Promise<{ sameSchema: boolean; refusals: { reason: string; hint: string }[] }> {
  const status = await schemaStatus(tx);
  const dbMigrations = status.applied.map((m) => ({ name: m.name, idx: m.idx, hash: m.hash }));
  const diff = diffSchemas(header.schema.migrations, dbMigrations);
  const sameSchema = schemasEqual(diff);
  const refusals: { reason: string; hint: string }[] = [];
  if (!sameSchema) {
    const dbVersion = status.databaseVersionName
      ? `${status.databaseVersion} (${status.databaseVersionName})`
      : `${status.databaseVersion} (empty)`;
    refusals.push({
      reason:
        `snapshot ${header.name} is of schema ${header.schema.version} (${header.schema.version_name ?? 'empty'}) ` +
        `but the database is at schema ${dbVersion}: ${describeDiff(diff)}`,
      hint:
        status.applied.length === 0
          ? "The database is empty: migrate it to the snapshot's schema first (meshctl db migrate, with the meshctl release that took the snapshot)."
          : "Restore into a database at the snapshot's schema, or pass --force to restore the tables and columns both schemas have.",
    });
  }
  if (status.unknown.length > 0) {
    refusals.push({
      reason: `the database holds migration(s) this meshctl does not know (${status.unknown.map((m) => m.name).join(', ')}), so it cannot know every table to restore`,
      hint: 'Use a meshctl at least as new as the registry that migrated the database.',
    });
  }
  const live = await liveReplicas(tx);
  if (live.length > 0) {
    const list = live
      .map((r) => `${r.replica_id} (${r.draining ? 'draining' : 'serving'}, seen ${r.seen_seconds_ago}s ago)`)
      .join(', ');
    refusals.push({
      reason: `${live.length} registry replica(s) are running on this database: ${list}; restoring would rewrite jobs, agents and the fleet table under them`,
      hint: 'Stop every replica first (SIGTERM marks it stopped), restore, then start them again; or pass --force to restore under them.',
    });
  }
  return { sameSchema, refusals };
}

/** Without --force, any refusal stops the restore (nothing changed); with it, each is warned and recorded. */
function overrideRefusals(refusals: { reason: string; hint: string }[], options: RestoreOptions): string[] {
  const forced: string[] = [];
  if (refusals.length > 0) {
    if (!options.force) {
      throw new CliError(
        `refusing to restore (nothing was changed):\n${refusals.map((r) => `  - ${r.reason}`).join('\n')}`,
        1,
        refusals.map((r) => r.hint).join('\n'),
      );
    }
    for (const r of refusals) {
      forced.push(r.reason);
      options.warn(`--force: ${r.reason}`);
    }
  }
  return forced;
}

/** For each snapshot table the database has: the columns to insert (warning of those dropped) and its sequences. */
async function restoreTargets(
  tx: Tx,
  header: SnapshotHeader,
  presentSet: Set<string>,
  options: RestoreOptions,
): Promise<Targets> {
  const targets: Targets = new Map();
  for (const t of header.tables) {
    if (!presentSet.has(t.name)) {
      if (t.name !== ledgerTable) {
        options.warn(
          `table ${t.name} is not a registry table of this database (for this meshctl): its ${t.rows} row(s) are not restored`,
        );
      }
      continue;
    }
    const dbColumns = await columnsOf(tx, t.name);
    const insertable = new Set(dbColumns.filter((c) => !c.generated).map((c) => c.name));
    const dropped = t.columns.filter((c) => !insertable.has(c));
    if (dropped.length > 0 && t.rows > 0) {
      options.warn(
        `table ${t.name}: column(s) ${dropped.join(', ')} are not in this database; their values are dropped`,
      );
    }
    targets.set(t.name, {
      columns: t.columns
        .filter((c) => insertable.has(c))
        .map(quoteIdent)
        .join(', '),
      sequences: dbColumns.flatMap((c) => (c.sequence ? [{ column: c.name, sequence: c.sequence }] : [])),
    });
  }
  return targets;
}

/** Streams the file's rows into their tables, in batches; the tables restored, with the rows each promised. */
async function loadRows(
  tx: Tx,
  rows: SnapshotRows,
  header: SnapshotHeader,
  targets: Targets,
  options: RestoreOptions,
): Promise<{ name: string; rows: number }[]> {
  let current: SnapshotTable | undefined;
  let batch: string[] = [];
  let bytes = 0;
  const restored: { name: string; rows: number }[] = [];
  const flush = async () => {
    const target = current && targets.get(current.name);
    if (current && target && batch.length > 0 && target.columns) {
      const table = quoteIdent(current.name);
      await tx.unsafe(
        `insert into ${table} (${target.columns}) overriding system value
             select ${target.columns} from json_populate_recordset(null::${table}, $1::text::json)`,
        [`[${batch.join(',')}]`],
      );
    }
    batch = [];
    bytes = 0;
  };
  const finishTable = async () => {
    await flush();
    if (current && targets.has(current.name)) {
      restored.push({ name: current.name, rows: current.rows });
      options.onTable?.(current.name, current.rows);
    }
  };
  for (let next = await rows.next(); !next.done; next = await rows.next()) {
    const item = next.value;
    if (item.kind === 'table') {
      await finishTable();
      current = item.table;
    } else if (item.kind === 'row') {
      if (item.table === 'registry_replicas') checkReplicaRow(options.file, header, item.json);
      batch.push(item.json);
      bytes += item.json.length;
      if (batch.length >= batchRows || bytes >= batchBytes) await flush();
    }
  }
  await finishTable();
  return restored;
}

/** Moves each identity sequence past the restored ids, then checks every table holds what the snapshot counted. */
async function fixSequencesAndCheckCounts(
  tx: Tx,
  header: SnapshotHeader,
  restored: { name: string; rows: number }[],
  targets: Targets,
): Promise<void> {
  for (const { name } of restored) {
    const table = quoteIdent(name);
    for (const s of targets.get(name)?.sequences ?? []) {
      // Next id after the largest restored one (is_called=false: nextval returns exactly it).
      await tx.unsafe(
        `select setval($1::regclass, coalesce((select max(${quoteIdent(s.column)}) from ${table}), 0) + 1, false)`,
        [s.sequence],
      );
    }
    const [{ n }] = (await tx.unsafe(`select count(*)::int as n from ${table}`)) as unknown as [
      { n: number },
    ];
    const expected = header.tables.find((t) => t.name === name)?.rows;
    if (n !== expected) {
      throw new CliError(
        `after restoring, table ${name} holds ${n} rows, the snapshot ${expected}; rolled back`,
      );
    }
  }
}

/** Replicas restored as seen in this database's future are set to now. */
async function clampReplicaClocks(tx: Tx, options: RestoreOptions): Promise<void> {
  // A replica seen "later" than this database's clock (a snapshot restored onto
  // a server whose clock is behind the one it was taken from) is clamped to now:
  // the database clock decides liveness (DESIGN.md §4.1), and it ages out from here.
  const clamped = await tx<{ replica_id: string }[]>`
    update registry_replicas
    set last_seen_at = least(last_seen_at, now()), started_at = least(started_at, now())
    where last_seen_at > now() or started_at > now()
    returning replica_id`;
  if (clamped.length > 0) {
    options.warn(
      `registry_replicas: ${clamped.map((r) => r.replica_id).join(', ')} were seen after this database's clock; set to now`,
    );
  }
}

/** Puts the fleet drain back as it was before the restore, unless --reset-drain; the three states. */
async function keepFleetDrain(
  tx: Tx,
  settings: boolean,
  drainBefore: FleetDrainSetting,
  options: RestoreOptions,
): Promise<RestoreResult['fleetDrain']> {
  // The fleet drain is the operator's present intent, not history: keep it
  // unless told otherwise (a restore under a persisted drain must not
  // start the replicas dispatching).
  const drainSnapshot = await fleetDrainOf(tx, settings);
  const kept = !options.resetDrain;
  if (kept && settings && drainBefore.draining !== drainSnapshot.draining) {
    await tx`
      insert into registry_settings (key, value, updated_at)
      values ('fleet_drain', ${tx.json(drainBefore as never)}, now())
      on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at`;
  }
  const drainAfter = await fleetDrainOf(tx, settings);
  return { before: drainBefore, snapshot: drainSnapshot, after: drainAfter, kept };
}

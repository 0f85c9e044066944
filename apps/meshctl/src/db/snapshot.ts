import {
  ledgerTable,
  migrationLockKey,
  readBundledMigrations,
  registryTables,
  type Sql,
  schemaStatus,
} from '@mesh/db';
import { CliError } from '../cli/errors.ts';
import { checkReplicaRow, checkSnapshotLedger } from './snapshot-checks.ts';
import {
  readSnapshotRows,
  type SnapshotHeader,
  type SnapshotMigration,
  type SnapshotTable,
  snapshotFormat,
  snapshotFormatVersion,
  writeSnapshotFile,
} from './snapshot-file.ts';

// Transaction handles are used through the pool's interface (same methods).
type Tx = Sql;

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Tables of `names` that exist (in the search path), in the given order. */
async function existingTables(sql: Tx, names: readonly string[]): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select n as name from unnest(${names as string[]}::text[]) as n where to_regclass(quote_ident(n)) is not null`;
  const present = new Set(rows.map((r) => r.name));
  return names.filter((n) => present.has(n));
}

interface Column {
  name: string;
  generated: boolean;
  sequence: string | null;
}

async function columnsOf(sql: Tx, table: string): Promise<Column[]> {
  const rows = await sql<{ name: string; generated: string; sequence: string | null }[]>`
    select a.attname as name, a.attgenerated as generated,
           pg_get_serial_sequence(quote_ident(${table}), a.attname) as sequence
    from pg_attribute a
    where a.attrelid = to_regclass(quote_ident(${table})) and a.attnum > 0 and not a.attisdropped
    order by a.attnum`;
  return rows.map((r) => ({ name: r.name, generated: r.generated !== '', sequence: r.sequence }));
}

async function primaryKey(sql: Tx, table: string): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select a.attname as name
    from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
    where i.indrelid = to_regclass(quote_ident(${table})) and i.indisprimary
    order by array_position(i.indkey::int2[], a.attnum)`;
  return rows.map((r) => r.name);
}

export interface TakeSnapshotOptions {
  file: string;
  name: string;
  meshctlVersion: string;
}

export interface TakenSnapshot {
  header: SnapshotHeader;
  sizeBytes: number;
}

/**
 * Writes a snapshot of every registry table (schema.ts's tables that exist,
 * plus the migration ledger) from one REPEATABLE READ READ ONLY transaction:
 * the counts in the header and the rows after it are the same instant of the
 * database, whatever the replicas write meanwhile, and nothing is blocked.
 */
export async function takeSnapshot(sql: Sql, options: TakeSnapshotOptions): Promise<TakenSnapshot> {
  return sql.begin('isolation level repeatable read read only', async (txSql) => {
    const tx = txSql as unknown as Tx;
    const status = await schemaStatus(tx);
    if (status.applied.length === 0) {
      throw new CliError(
        'the database holds no registry schema (no migration applied): nothing to snapshot',
        1,
        'Migrate it first: meshctl db migrate',
      );
    }
    if (status.unknown.length > 0) {
      // Its tables may differ from the ones this meshctl knows: a snapshot would miss them.
      throw new CliError(
        `the database holds migration(s) this meshctl does not know (${status.unknown.map((m) => m.name).join(', ')}): ` +
          'a snapshot taken by it could miss tables the newer schema added',
        1,
        'Use a meshctl at least as new as the registry that migrated the database.',
      );
    }
    const [info] = await tx<{ created_at: Date; db: string; server_version: string }[]>`
      select now() as created_at, current_database() as db, current_setting('server_version') as server_version`;
    const names = await existingTables(tx, [ledgerTable, ...registryTables]);
    const tables: (SnapshotTable & { order: string[] })[] = [];
    for (const name of names) {
      const [{ n }] = (await tx.unsafe(`select count(*)::int as n from ${quoteIdent(name)}`)) as unknown as [
        { n: number },
      ];
      const columns = (await columnsOf(tx, name)).map((c) => c.name);
      tables.push({ name, rows: n, columns, order: await primaryKey(tx, name) });
    }
    const migrations: SnapshotMigration[] = status.applied.map((m) => ({
      name: m.name,
      idx: m.idx,
      hash: m.hash,
    }));
    const header: SnapshotHeader = {
      format: snapshotFormat,
      format_version: snapshotFormatVersion,
      name: options.name,
      created_at: (info as { created_at: Date }).created_at.toISOString(),
      meshctl_version: options.meshctlVersion,
      database: { name: info?.db ?? '', server_version: info?.server_version ?? '' },
      schema: {
        version: status.databaseVersion,
        version_name: status.databaseVersionName ?? null,
        migrations,
      },
      tables: tables.map(({ name, rows, columns }) => ({ name, rows, columns })),
      total_rows: tables.reduce((a, t) => a + t.rows, 0),
    };

    async function* lines(): AsyncGenerator<string> {
      yield `${JSON.stringify(header)}\n`;
      for (const t of tables) {
        yield `${JSON.stringify({ mesh_snapshot_table: t.name, rows: t.rows })}\n`;
        const orderBy = t.order.length ? ` order by ${t.order.map(quoteIdent).join(', ')}` : '';
        const query = tx.unsafe(`select row_to_json(t)::text as j from ${quoteIdent(t.name)} t${orderBy}`);
        let seen = 0;
        for await (const batch of query.cursor(1000) as AsyncIterable<{ j: string }[]>) {
          seen += batch.length;
          // A raw newline can only be whitespace between JSON tokens (inside strings it
          // is escaped), so flattening it keeps the value while keeping one row per line.
          yield `${batch.map((r) => r.j.replace(/[\r\n]/g, ' ')).join('\n')}\n`;
        }
        if (seen !== t.rows) {
          throw new CliError(`table ${t.name} returned ${seen} rows, the snapshot counted ${t.rows}`);
        }
      }
      yield `${JSON.stringify({ mesh_snapshot_end: true, total_rows: header.total_rows })}\n`;
    }

    const sizeBytes = await writeSnapshotFile(options.file, lines());
    return { header, sizeBytes };
  }) as Promise<TakenSnapshot>;
}

/** How the snapshot's schema differs from the database's (by migration name and hash). */
export interface SchemaDiff {
  onlyInSnapshot: string[];
  onlyInDatabase: string[];
  differentSql: string[];
}

export function diffSchemas(snapshot: SnapshotMigration[], database: SnapshotMigration[]): SchemaDiff {
  const db = new Map(database.map((m) => [m.name, m.hash]));
  const snap = new Map(snapshot.map((m) => [m.name, m.hash]));
  return {
    onlyInSnapshot: snapshot.filter((m) => !db.has(m.name)).map((m) => m.name),
    onlyInDatabase: database.filter((m) => !snap.has(m.name)).map((m) => m.name),
    differentSql: snapshot.filter((m) => db.has(m.name) && db.get(m.name) !== m.hash).map((m) => m.name),
  };
}

export const schemasEqual = (d: SchemaDiff) =>
  d.onlyInSnapshot.length + d.onlyInDatabase.length + d.differentSql.length === 0;

export function describeDiff(d: SchemaDiff): string {
  const parts: string[] = [];
  if (d.onlyInSnapshot.length) parts.push(`only in the snapshot: ${d.onlyInSnapshot.join(', ')}`);
  if (d.onlyInDatabase.length) parts.push(`only in the database: ${d.onlyInDatabase.join(', ')}`);
  if (d.differentSql.length) parts.push(`applied with different SQL: ${d.differentSql.join(', ')}`);
  return parts.join('; ');
}

/** A replica that looks alive in `registry_replicas`. */
export interface LiveReplica {
  replica_id: string;
  draining: boolean;
  seen_seconds_ago: number;
}

/**
 * Replicas not marked stopped and heard from within `windowSeconds` (30 s:
 * ten default heartbeats; a replica killed without a clean stop drops out of
 * this list after it).
 */
export async function liveReplicas(sql: Tx, windowSeconds = 30): Promise<LiveReplica[]> {
  if ((await existingTables(sql, ['registry_replicas'])).length === 0) return [];
  return sql<LiveReplica[]>`
    select replica_id, draining, round(extract(epoch from now() - last_seen_at)::numeric, 1)::float8 as seen_seconds_ago
    from registry_replicas
    where stopped_at is null and last_seen_at > now() - make_interval(secs => ${windowSeconds})
    order by replica_id`;
}

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
          .map(
            (r) =>
              `${r.replica_id} (${r.draining ? 'draining' : 'serving'}, seen ${r.seen_seconds_ago}s ago)`,
          )
          .join(', ');
        refusals.push({
          reason: `${live.length} registry replica(s) are running on this database: ${list}; restoring would rewrite jobs, agents and the fleet table under them`,
          hint: 'Stop every replica first (SIGTERM marks it stopped), restore, then start them again; or pass --force to restore under them.',
        });
      }
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

      const targets = new Map<
        string,
        { columns: string; sequences: { column: string; sequence: string }[] }
      >();
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
      if (presentSet.has('registry_replicas')) {
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
      return {
        fleetDrain: { before: drainBefore, snapshot: drainSnapshot, after: drainAfter, kept },
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

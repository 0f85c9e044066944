// Taking a snapshot, and what a restore compares (schemas) and refuses
// under (live replicas). The restore itself is snapshot-restore.ts.

import { ledgerTable, registryTables, type Sql, schemaStatus } from '@mesh/db';
import { CliError } from '../cli/errors.ts';
import { columnsOf, existingTables, primaryKey, quoteIdent, type Tx } from './catalog.ts';
import {
  type SnapshotHeader,
  type SnapshotMigration,
  type SnapshotTable,
  snapshotFormat,
  snapshotFormatVersion,
  writeSnapshotFile,
} from './snapshot-file.ts';

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

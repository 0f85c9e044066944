import { type BundledMigration, ledgerTable } from '@mesh/db';
import { CliError } from '../cli/errors.ts';
import { readSnapshotRows, type SnapshotHeader, type SnapshotMigration } from './snapshot-file.ts';

/**
 * Checks of a snapshot's contents that no `--force` overrides: a file that
 * contradicts itself (or this meshctl's migrations) is not a snapshot of any
 * database, and restoring it would leave one no registry starts on, or a
 * replica row that looks alive for ever.
 */

/**
 * How far a `registry_replicas.last_seen_at` may be past the snapshot's own
 * `created_at` (both read from the same database clock, so an honest file has
 * none past it; the allowance only covers a snapshot started while a replica's
 * heartbeat transaction was committing).
 */
export const replicaClockSkewSeconds = 60;

const refuse = (file: string, problems: string[]) =>
  new CliError(
    `refusing to restore ${file} (nothing was changed): its contents contradict themselves:\n` +
      problems.map((p) => `  - ${p}`).join('\n'),
    1,
    'The file was edited or damaged after it was taken: restore another snapshot. --force does not override this.',
  );

const describeMigration = (m: SnapshotMigration) =>
  `${m.name} (idx ${m.idx}, sha256 ${m.hash.slice(0, 12)}…)`;

/**
 * The snapshot's migration ledger rows must be exactly its header's schema
 * (same names, positions and hashes), and every migration this meshctl bundles
 * under the same name must have the same position and hash. Reads the file only
 * up to the end of the ledger table (the first table), before the database is
 * touched.
 */
export async function checkSnapshotLedger(
  file: string,
  header: SnapshotHeader,
  bundled: BundledMigration[],
): Promise<void> {
  const problems: string[] = [];
  const ledgerRows: SnapshotMigration[] = [];
  let inLedger = false;
  const rows = readSnapshotRows(file);
  try {
    for await (const item of rows) {
      if (item.kind === 'table') {
        if (inLedger) break;
        inLedger = item.table.name === ledgerTable;
      } else if (item.kind === 'row' && inLedger) {
        let row: Partial<SnapshotMigration>;
        try {
          row = JSON.parse(item.json) as Partial<SnapshotMigration>;
        } catch {
          problems.push(`a ${ledgerTable} row is not JSON: ${item.json.slice(0, 80)}`);
          continue;
        }
        ledgerRows.push({ name: String(row.name), idx: Number(row.idx), hash: String(row.hash) });
      }
    }
  } finally {
    await rows.return(undefined);
  }
  const inHeader = new Map(header.schema.migrations.map((m) => [m.name, m]));
  const inRows = new Map(ledgerRows.map((m) => [m.name, m]));
  // A snapshot always carries its ledger (taken from a migrated database): an
  // empty one with a non-empty header is as wrong as a differing one.
  if (header.tables.some((t) => t.name === ledgerTable) || header.schema.migrations.length > 0) {
    for (const m of header.schema.migrations) {
      const r = inRows.get(m.name);
      if (!r)
        problems.push(`the header lists migration ${describeMigration(m)}, the ${ledgerTable} rows do not`);
      else if (r.hash !== m.hash || r.idx !== m.idx) {
        problems.push(
          `migration ${m.name}: the header says ${describeMigration(m)}, the ${ledgerTable} row says ${describeMigration(r)}`,
        );
      }
    }
    for (const r of ledgerRows) {
      if (!inHeader.has(r.name))
        problems.push(`the ${ledgerTable} rows hold ${describeMigration(r)}, the header does not`);
    }
  }
  const known = new Map(bundled.map((m) => [m.name, m]));
  for (const m of [...header.schema.migrations, ...ledgerRows.filter((r) => !inHeader.has(r.name))]) {
    const b = known.get(m.name);
    if (b && (b.hash !== m.hash || b.idx !== m.idx)) {
      problems.push(
        `migration ${m.name} is recorded as ${describeMigration(m)} but this meshctl's ${m.name} is ${describeMigration(b)}: ` +
          'no registry starts on a ledger that disagrees with its migrations',
      );
    }
  }
  if (problems.length > 0) throw refuse(file, problems);
}

/**
 * A restored `registry_replicas` row: refused when it was last seen after the
 * snapshot was taken (beyond `replicaClockSkewSeconds`), which no honest file
 * holds; such a row would count as a live replica for as long as its date is
 * ahead, so a fleet drain could never be fully acknowledged.
 */
export function checkReplicaRow(file: string, header: SnapshotHeader, json: string): void {
  let row: { replica_id?: unknown; last_seen_at?: unknown; started_at?: unknown };
  try {
    row = JSON.parse(json);
  } catch {
    throw refuse(file, [`a registry_replicas row is not JSON: ${json.slice(0, 80)}`]);
  }
  const limit = Date.parse(header.created_at) + replicaClockSkewSeconds * 1000;
  const problems: string[] = [];
  for (const column of ['last_seen_at', 'started_at'] as const) {
    const at = Date.parse(String(row[column]));
    if (!Number.isFinite(at) || at > limit) {
      problems.push(
        `replica ${String(row.replica_id)}: ${column} ${String(row[column])} is after the snapshot was taken ` +
          `(${header.created_at}, + ${replicaClockSkewSeconds} s allowed); it would count as alive until then`,
      );
    }
  }
  if (problems.length > 0) throw refuse(file, problems);
}

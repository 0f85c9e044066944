import { createReadStream, createWriteStream } from 'node:fs';
import { link, open, readdir, stat, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { CliError, UsageError } from '../cli/errors.ts';

/**
 * A snapshot file (`<name>.jsonl.gz`) is gzipped JSON lines:
 *
 *   {"format":"mesh-registry-snapshot", … header: schema, tables, row counts}
 *   {"mesh_snapshot_table":"agents","rows":2}
 *   <row_to_json of each row, one per line>
 *   {"mesh_snapshot_table":"agent_capabilities","rows":5}
 *   …
 *   {"mesh_snapshot_end":true,"total_rows":123}
 *
 * Rows are PostgreSQL's own JSON text (`row_to_json`), written and restored
 * without being parsed in JavaScript, so int8 values beyond 2^53, timestamps'
 * microseconds and jsonb payloads come back exactly as they were.
 */
export const snapshotFormat = 'mesh-registry-snapshot';
export const snapshotFormatVersion = 1;
export const snapshotSuffix = '.jsonl.gz';

export interface SnapshotMigration {
  name: string;
  idx: number;
  hash: string;
}

export interface SnapshotTable {
  name: string;
  rows: number;
  /** Column names at snapshot time: restore inserts those the table still has. */
  columns: string[];
}

export interface SnapshotHeader {
  format: typeof snapshotFormat;
  format_version: number;
  name: string;
  /** Database clock at the start of the snapshot transaction. */
  created_at: string;
  meshctl_version: string;
  database: { name: string; server_version: string };
  /** The schema the rows belong to: the applied migrations of the database. */
  schema: { version: number; version_name: string | null; migrations: SnapshotMigration[] };
  /** In file order (foreign-key parents first). */
  tables: SnapshotTable[];
  total_rows: number;
}

export interface TableMarker {
  mesh_snapshot_table: string;
  rows: number;
}

export interface EndMarker {
  mesh_snapshot_end: true;
  total_rows: number;
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Checks a snapshot name given by the operator; `x.jsonl.gz` is taken as `x`. */
export function checkSnapshotName(raw: string): string {
  const name = raw.endsWith(snapshotSuffix) ? raw.slice(0, -snapshotSuffix.length) : raw;
  if (!namePattern.test(name)) {
    throw new UsageError(
      `invalid snapshot name "${raw}": use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

/** `mesh-20250131-154502`, from a date (UTC). */
export function defaultSnapshotName(at: Date): string {
  const iso = at.toISOString();
  return `mesh-${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}`;
}

// As the registry (apps/registry/src/config.ts): root keeps its data in /var/lib.
const registryDataDir = (env: NodeJS.ProcessEnv) =>
  env.MESH_DATA_DIR ||
  (process.getuid?.() === 0
    ? '/var/lib/mesh-registry'
    : join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'mesh-registry'));

/**
 * Where snapshots live: `--dir`, else `MESH_SNAPSHOT_DIR`, else
 * `<registry data dir>/snapshots` (the registry's own default data dir:
 * `MESH_DATA_DIR`, else `$XDG_DATA_HOME/mesh-registry`).
 */
export function snapshotDir(dirFlag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(dirFlag || env.MESH_SNAPSHOT_DIR || join(registryDataDir(env), 'snapshots'));
}

/** A snapshot argument: a name in `dir`, or a path to a file (anything with a `/`). */
export function snapshotPath(dir: string, nameOrPath: string): string {
  if (nameOrPath.includes('/') || isAbsolute(nameOrPath)) return resolve(nameOrPath);
  return join(dir, `${checkSnapshotName(nameOrPath)}${snapshotSuffix}`);
}

/**
 * The lines of a gzipped text file, without their newline. Errors (a missing
 * file, bytes that are not gzip, a truncated stream) reject the iteration.
 */
export async function* gzipLines(file: string): AsyncGenerator<string> {
  const source = createReadStream(file);
  const gunzip = createGunzip();
  source.on('error', (err) => gunzip.destroy(err));
  source.pipe(gunzip);
  gunzip.setEncoding('utf8');
  let pending = '';
  try {
    for await (const chunk of gunzip as AsyncIterable<string>) {
      pending += chunk;
      let start = 0;
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n', start)) {
        yield pending.slice(start, nl);
        start = nl + 1;
      }
      pending = pending.slice(start);
    }
    if (pending) yield pending;
  } finally {
    source.destroy();
    gunzip.destroy();
  }
}

function parseHeader(line: string, file: string): SnapshotHeader {
  let header: SnapshotHeader;
  try {
    header = JSON.parse(line) as SnapshotHeader;
  } catch {
    throw new CliError(`${file} is not a mesh registry snapshot (its first line is not JSON)`);
  }
  if (header?.format !== snapshotFormat || !Array.isArray(header.tables) || !header.schema) {
    throw new CliError(`${file} is not a mesh registry snapshot (no "${snapshotFormat}" header)`);
  }
  if (header.format_version > snapshotFormatVersion) {
    throw new CliError(
      `${file} is snapshot format ${header.format_version}; this meshctl reads format ${snapshotFormatVersion} at most`,
      1,
      'Use a meshctl at least as new as the one that took the snapshot.',
    );
  }
  return header;
}

/** Reads only the header line of a snapshot file. */
export async function readSnapshotHeader(file: string): Promise<SnapshotHeader> {
  try {
    for await (const line of gzipLines(file)) return parseHeader(line, file);
  } catch (err) {
    if (err instanceof CliError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT')
      throw new CliError(`no snapshot at ${file}`, 1, 'List them with: meshctl db snapshots');
    throw new CliError(`cannot read ${file}: ${e.message}`);
  }
  throw new CliError(`${file} is empty`);
}

/**
 * The snapshot's header, then for each table its marker and rows, then the end
 * marker: checks the structure as it goes (counts, order, end marker), so a
 * truncated or edited file fails before anything is committed.
 */
export async function* readSnapshotRows(
  file: string,
): AsyncGenerator<
  | { kind: 'header'; header: SnapshotHeader }
  | { kind: 'table'; table: SnapshotTable }
  | { kind: 'row'; table: string; json: string }
> {
  let header: SnapshotHeader | undefined;
  let tableIndex = -1;
  let left = 0;
  let ended = false;
  let total = 0;
  const corrupt = (why: string) => new CliError(`${file} is damaged: ${why}; nothing was restored`);
  try {
    for await (const line of gzipLines(file)) {
      if (ended) {
        if (line.trim()) throw corrupt('data after the end marker');
        continue;
      }
      if (!header) {
        header = parseHeader(line, file);
        yield { kind: 'header', header };
        continue;
      }
      if (left > 0) {
        left--;
        total++;
        yield { kind: 'row', table: header.tables[tableIndex]?.name as string, json: line };
        continue;
      }
      let marker: Partial<TableMarker & EndMarker>;
      try {
        marker = JSON.parse(line);
      } catch {
        throw corrupt(`expected a table or end marker, found ${line.slice(0, 80)}`);
      }
      if (marker.mesh_snapshot_end) {
        if (tableIndex !== header.tables.length - 1 || marker.total_rows !== total) {
          throw corrupt(`ended after ${total} rows of ${tableIndex + 1} tables; the header promises more`);
        }
        ended = true;
        continue;
      }
      const expected = header.tables[++tableIndex];
      if (!expected || marker.mesh_snapshot_table !== expected.name || marker.rows !== expected.rows) {
        throw corrupt(`unexpected table marker ${line.slice(0, 120)}`);
      }
      left = expected.rows;
      yield { kind: 'table', table: expected };
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw corrupt((err as Error).message);
  }
  if (!header) throw corrupt('it is empty');
  if (!ended) throw corrupt('it ends early (no end marker)');
}

/**
 * Writes `lines` gzipped to `<file>` through a temporary file in the same
 * directory, fsynced, then linked into place: the final name appears only when
 * the whole snapshot is on disk, and an existing snapshot is never replaced.
 * On any failure the temporary file is removed.
 */
export async function writeSnapshotFile(file: string, lines: AsyncIterable<string>): Promise<number> {
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${process.pid}-${Date.now()}`);
  try {
    await pipeline(Readable.from(lines), createGzip(), createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
    const fh = await open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new CliError(`a snapshot already exists at ${file}`, 1, 'Choose another --name.');
      }
      throw err;
    }
    return (await stat(file)).size;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

export interface SnapshotEntry {
  name: string;
  file: string;
  size_bytes: number;
  header: SnapshotHeader | null;
  /** Why the header could not be read. */
  error: string | null;
}

/** Every `*.jsonl.gz` in `dir` (temporary files excluded), oldest first. */
export async function listSnapshots(dir: string): Promise<SnapshotEntry[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new CliError(`cannot read ${dir}: ${(err as Error).message}`);
  }
  const entries = await Promise.all(
    names
      .filter((n) => n.endsWith(snapshotSuffix) && !n.startsWith('.'))
      .map(async (n): Promise<SnapshotEntry> => {
        const file = join(dir, n);
        const size = await stat(file).then(
          (s) => s.size,
          () => 0,
        );
        try {
          const header = await readSnapshotHeader(file);
          return { name: n.slice(0, -snapshotSuffix.length), file, size_bytes: size, header, error: null };
        } catch (err) {
          return {
            name: n.slice(0, -snapshotSuffix.length),
            file,
            size_bytes: size,
            header: null,
            error: (err as Error).message,
          };
        }
      }),
  );
  return entries.sort(
    (a, b) =>
      (a.header?.created_at ?? '').localeCompare(b.header?.created_at ?? '') || a.name.localeCompare(b.name),
  );
}

/** `1.2 MiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

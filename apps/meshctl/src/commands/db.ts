import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { describeVersion, migrate, SchemaError, type SchemaStatus, schemaStatus } from '@mesh/db';
import type { Argv, CommandModule } from 'yargs';
import type { GlobalArgs } from '../cli/connection.ts';
import { run } from '../cli/context.ts';
import { CliError, UsageError } from '../cli/errors.ts';
import { colors, table } from '../cli/output.ts';
import {
  type DatabaseArgs,
  databaseOption,
  describeDbError,
  redactUrl,
  requireDatabaseUrl,
  usingDatabase,
} from '../db/connect.ts';
import { liveWindowSeconds, replicasFromDatabase } from '../db/replicas.ts';
import { takeSnapshot } from '../db/snapshot.ts';
import {
  checkSnapshotName,
  defaultSnapshotName,
  formatBytes,
  listSnapshots,
  snapshotDir,
  snapshotPath,
  snapshotSuffix,
} from '../db/snapshot-file.ts';
import { type FleetDrainSetting, restoreSnapshot } from '../db/snapshot-restore.ts';
import { replicaSchemaVerdict } from '../upgrade/compat.ts';
import { verdictTable } from '../upgrade/compat-table.ts';
import { meshctlVersion } from '../version.ts';

type DbArgs = GlobalArgs & DatabaseArgs;

const connectTimeout = (args: GlobalArgs) => Math.min(args.timeout ?? 30, 30);

// ─── db status ───────────────────────────────────────────────────────────────

/** The compatibility verdict of `db status` (and the `verdict` field of its JSON). */
export type SchemaVerdict = 'up_to_date' | 'pending' | 'database_newer' | 'history_modified';

export function schemaVerdict(s: SchemaStatus): SchemaVerdict {
  if (s.mismatched.length > 0) return 'history_modified';
  if (s.unknown.length > 0) return 'database_newer';
  if (s.pending.length > 0) return 'pending';
  return 'up_to_date';
}

function verdictText(s: SchemaStatus): { title: string; detail: string; fix?: string } {
  switch (schemaVerdict(s)) {
    case 'history_modified':
      return {
        title: 'history modified',
        detail:
          `migration(s) ${s.mismatched.map((m) => m.name).join(', ')} were applied with different SQL than this meshctl bundles: ` +
          'the database and this build disagree on history; no registry of this build will start on it.',
        fix: 'Find the build that applied them (or restore a snapshot taken before: meshctl db restore <name>).',
      };
    case 'database_newer':
      return {
        title: 'database newer than this meshctl',
        detail: `it holds migration(s) this meshctl does not know: ${s.unknown.map((m) => m.name).join(', ')}.`,
        fix: 'Use a meshctl at least as new as the registry that migrated the database.',
      };
    case 'pending':
      return {
        title: 'migrations pending',
        detail:
          `${s.pending.length} bundled migration(s) not applied: ${s.pending.map((m) => m.name).join(', ')}` +
          (s.applied.length === 0 ? ' (the database is empty).' : '.'),
        fix: 'meshctl db migrate',
      };
    default:
      return { title: 'up to date', detail: "the database is at this meshctl's schema." };
  }
}

type MigrationState = 'applied' | 'pending' | 'unknown' | 'modified';

function migrationRows(s: SchemaStatus) {
  const applied = new Map(s.applied.map((m) => [m.name, m]));
  const bundled = new Map(s.bundled.map((m) => [m.name, m]));
  const names = [...new Set([...s.bundled.map((m) => m.name), ...s.applied.map((m) => m.name)])];
  const idx = (n: string) => applied.get(n)?.idx ?? bundled.get(n)?.idx ?? 0;
  return names
    .sort((a, b) => idx(a) - idx(b) || a.localeCompare(b))
    .map((name) => {
      const a = applied.get(name);
      const b = bundled.get(name);
      // The declaration as the ledger recorded it, else as this meshctl bundles it.
      const compatibility = a?.compatibility ?? b?.compatibility ?? null;
      const state: MigrationState = !a
        ? 'pending'
        : !b
          ? 'unknown'
          : a.hash !== b.hash
            ? 'modified'
            : 'applied';
      return {
        name,
        idx: idx(name),
        state,
        bundled: Boolean(b),
        applied: Boolean(a),
        hash: a?.hash ?? b?.hash ?? null,
        applied_at: a?.appliedAt.toISOString() ?? null,
        applied_by: a?.appliedBy ?? null,
        compatibility,
        release: a?.release ?? b?.release ?? null,
        oldest_compatible:
          compatibility === 'breaking' ? (a?.oldestCompatible ?? b?.oldestCompatible ?? null) : null,
      };
    });
}

const stateColour: Record<MigrationState, (s: string) => string> = {
  applied: colors.green,
  pending: colors.yellow,
  unknown: colors.red,
  modified: colors.red,
};

const statusCommand: CommandModule<GlobalArgs, DbArgs> = {
  command: 'status',
  describe:
    "Bundled vs applied migrations, schema versions, and whether this database and meshctl's build agree",
  builder: (y) =>
    databaseOption(y)
      .example('$0 db status --database-url postgres://mesh:…@db:5432/mesh', '')
      .example(
        'DATABASE_URL=postgres://… $0 db status --json',
        'verdict: up_to_date | pending | database_newer | history_modified',
      ),
  handler: run<DbArgs>(async (args, ctx) => {
    const url = requireDatabaseUrl(args);
    const { s, replicas } = await usingDatabase(
      url,
      async (db) => ({ s: await schemaStatus(db.sql), replicas: await replicasFromDatabase(db.sql) }),
      { timeoutSeconds: connectTimeout(args) },
    );
    const verdicts = replicas.filter((r) => r.live).map((r) => replicaSchemaVerdict(r, s.applied));
    const rows = migrationRows(s);
    const verdict = schemaVerdict(s);
    const text = verdictText(s);
    if (ctx.out.json) {
      ctx.out.printJson({
        database_url: redactUrl(url),
        verdict,
        verdict_detail: text.detail,
        fix: text.fix ?? null,
        database: { version: s.databaseVersion, name: s.databaseVersionName ?? null },
        binary: { version: s.binaryVersion, name: s.binaryVersionName ?? null },
        migrations: rows,
        pending: s.pending.map((m) => m.name),
        unknown: s.unknown.map((m) => m.name),
        modified: s.mismatched.map((m) => m.name),
        live_window_seconds: liveWindowSeconds,
        replicas: verdicts,
      });
      return;
    }
    ctx.out.line(`Database:      ${redactUrl(url)}`);
    ctx.out.line(`Schema:        database ${describeVersion(s.databaseVersion, s.databaseVersionName)}`);
    ctx.out.line(
      `               this meshctl ${describeVersion(s.binaryVersion, s.binaryVersionName)} (${meshctlVersion})`,
    );
    ctx.out.line();
    ctx.out.line(
      table(
        ['MIGRATION', 'STATE', 'BUNDLED', 'COMPATIBILITY', 'APPLIED AT', 'APPLIED BY'],
        rows.map((r) => [
          r.name,
          stateColour[r.state](r.state),
          r.bundled ? 'yes' : 'no',
          r.compatibility === 'breaking'
            ? `breaking (>= ${r.oldest_compatible ?? r.release ?? '?'})`
            : (r.compatibility ?? 'undeclared'),
          r.applied_at?.replace(/\.\d{3}Z$/, 'Z') ?? '-',
          r.applied_by ?? '-',
        ]),
      ),
    );
    ctx.out.line();
    if (verdicts.length === 0) {
      ctx.out.line(`Replicas: none live (none heard from in the last ${liveWindowSeconds} s).`);
    } else {
      ctx.out.line(
        `Replicas (live: heard from in the last ${liveWindowSeconds} s), can each run on this database?`,
      );
      ctx.out.line(verdictTable(verdicts));
    }
    ctx.out.line();
    const paint =
      verdict === 'up_to_date' ? colors.green : verdict === 'pending' ? colors.yellow : colors.red;
    ctx.out.line(`Verdict: ${paint(text.title)}: ${text.detail}`);
    if (text.fix) ctx.out.line(`Fix:     ${text.fix}`);
  }),
};

// ─── db migrate ──────────────────────────────────────────────────────────────

interface MigrateArgs extends DbArgs {
  'dry-run'?: boolean;
  'lock-timeout': number;
}

const migrateCommand: CommandModule<GlobalArgs, MigrateArgs> = {
  command: 'migrate',
  describe:
    "Apply this meshctl's pending migrations (as a registry does at boot: advisory lock, one transaction each)",
  builder: (y) =>
    databaseOption(y)
      .option('dry-run', { type: 'boolean', describe: 'List what would be applied; change nothing' })
      .option('lock-timeout', {
        type: 'number',
        default: 60,
        describe: 'Seconds to wait for the migration lock another replica holds',
      })
      .example('$0 db migrate --dry-run', 'what would be applied')
      .example('$0 db migrate', 'apply it') as Argv<MigrateArgs>,
  handler: run<MigrateArgs>(async (args, ctx) => {
    const url = requireDatabaseUrl(args);
    if (!Number.isFinite(args['lock-timeout']) || args['lock-timeout'] <= 0) {
      throw new UsageError(
        `--lock-timeout must be a positive number of seconds, got ${args['lock-timeout']}`,
      );
    }
    const before = await usingDatabase(url, (db) => schemaStatus(db.sql), {
      timeoutSeconds: connectTimeout(args),
    });
    const verdict = schemaVerdict(before);
    if (verdict === 'database_newer' || verdict === 'history_modified') {
      const text = verdictText(before);
      throw new CliError(`cannot migrate: ${text.title}: ${text.detail}`, 1, text.fix);
    }
    const from = describeVersion(before.databaseVersion, before.databaseVersionName);
    const to = describeVersion(before.binaryVersion, before.binaryVersionName);
    if (args['dry-run']) {
      if (ctx.out.json) {
        ctx.out.printJson({
          dry_run: true,
          would_apply: before.pending.map((m) => m.name),
          database_version: before.databaseVersion,
          binary_version: before.binaryVersion,
        });
      } else if (before.pending.length === 0) {
        ctx.out.line(`Nothing to apply: the database is at schema ${from}, as this meshctl.`);
      } else {
        ctx.out.line(`Would apply ${before.pending.length} migration(s) (schema ${from} -> ${to}):`);
        for (const m of before.pending) ctx.out.line(`  ${m.name}`);
        ctx.out.line('Run without --dry-run to apply them.');
      }
      return;
    }
    let result: Awaited<ReturnType<typeof migrate>>;
    try {
      result = await migrate(url, {
        appliedBy: `meshctl ${meshctlVersion}`,
        lockTimeoutMs: Math.round(args['lock-timeout'] * 1000),
        connectTimeoutSeconds: connectTimeout(args),
        onApply: (m) => {
          if (!ctx.out.json) ctx.out.line(`Applied ${m.name}`);
        },
      });
    } catch (err) {
      if (err instanceof SchemaError) {
        throw new CliError(
          `cannot migrate: ${err.message}`,
          1,
          err.kind === 'lock_timeout'
            ? 'A replica is migrating; try again, or raise --lock-timeout.'
            : undefined,
        );
      }
      throw new CliError(
        `migration failed: ${describeDbError(err)}`,
        1,
        'Each migration is its own transaction: the failed one left nothing behind.',
      );
    }
    const now = describeVersion(result.schemaVersion, result.schemaVersionName);
    if (ctx.out.json) {
      ctx.out.printJson({
        applied: result.applied,
        schema_version: result.schemaVersion,
        schema_version_name: result.schemaVersionName ?? null,
      });
    } else if (result.applied.length === 0) {
      ctx.out.line(`Already up to date: the database is at schema ${now}.`);
    } else {
      ctx.out.line(`Applied ${result.applied.length} migration(s): the database is at schema ${now}.`);
    }
  }),
};

// ─── db snapshot ─────────────────────────────────────────────────────────────

interface SnapshotArgs extends DbArgs {
  dir?: string;
  name?: string;
}

const dirOption = <T>(y: Argv<T>) =>
  y.option('dir', {
    type: 'string',
    describe:
      'Snapshot directory [env: MESH_SNAPSHOT_DIR; default: <data dir>/snapshots, data dir = MESH_DATA_DIR or $XDG_DATA_HOME/mesh-registry]',
  });

const snapshotCommand: CommandModule<GlobalArgs, SnapshotArgs> = {
  command: 'snapshot',
  describe: 'Write a consistent, gzipped logical snapshot of every registry table, with its schema version',
  builder: (y) =>
    dirOption(databaseOption(y))
      .option('name', { type: 'string', describe: 'Snapshot name (default mesh-<UTC date>-<time>)' })
      .example('$0 db snapshot', 'into the default directory')
      .example('$0 db snapshot --dir /backups --name before-upgrade', '') as Argv<SnapshotArgs>,
  handler: run<SnapshotArgs>(async (args, ctx) => {
    const url = requireDatabaseUrl(args);
    const dir = snapshotDir(args.dir);
    let name = args.name !== undefined ? checkSnapshotName(args.name) : defaultSnapshotName(new Date());
    await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: Error) => {
      throw new CliError(`cannot create the snapshot directory ${dir}: ${err.message}`);
    });
    if (args.name === undefined) {
      // Two snapshots in the same second: mesh-…-2, -3, …
      const taken = new Set((await listSnapshots(dir)).map((s) => s.name));
      for (let i = 2; taken.has(name); i++) name = `${defaultSnapshotName(new Date())}-${i}`;
    }
    const file = snapshotPath(dir, name);
    if (existsSync(file))
      throw new CliError(`a snapshot already exists at ${file}`, 1, 'Choose another --name.');
    const { header, sizeBytes } = await usingDatabase(
      url,
      async (db) => {
        try {
          return await takeSnapshot(db.sql, { file, name, meshctlVersion });
        } catch (err) {
          if (err instanceof CliError) throw err;
          throw new CliError(`snapshot failed (nothing was written): ${describeDbError(err)}`);
        }
      },
      { timeoutSeconds: connectTimeout(args) },
    );
    if (ctx.out.json) {
      ctx.out.printJson({
        name,
        file,
        size_bytes: sizeBytes,
        created_at: header.created_at,
        schema: header.schema,
        tables: header.tables.map((t) => ({ name: t.name, rows: t.rows })),
        total_rows: header.total_rows,
      });
      return;
    }
    ctx.out.line(
      table(
        ['TABLE', 'ROWS'],
        header.tables.map((t) => [t.name, String(t.rows)]),
      ),
    );
    ctx.out.line();
    ctx.out.line(
      `Snapshot ${name} written to ${file}: ${header.total_rows} rows in ${header.tables.length} tables, ` +
        `schema ${describeVersion(header.schema.version, header.schema.version_name ?? undefined)}, ${formatBytes(sizeBytes)}.`,
    );
    ctx.out.line(`Restore it with: meshctl db restore ${name}${args.dir ? ` --dir ${dir}` : ''}`);
  }),
};

// ─── db snapshots ────────────────────────────────────────────────────────────

const snapshotsCommand: CommandModule<GlobalArgs, SnapshotArgs> = {
  command: 'snapshots',
  describe: 'List the snapshots in the snapshot directory',
  builder: (y) =>
    dirOption(y)
      .example('$0 db snapshots', '')
      .example('$0 db snapshots --dir /backups --json', '') as Argv<SnapshotArgs>,
  handler: run<SnapshotArgs>(async (args, ctx) => {
    const dir = snapshotDir(args.dir);
    const list = await listSnapshots(dir);
    if (ctx.out.json) {
      ctx.out.printJson({
        dir,
        snapshots: list.map((s) => ({
          name: s.name,
          file: s.file,
          size_bytes: s.size_bytes,
          created_at: s.header?.created_at ?? null,
          schema_version: s.header?.schema.version ?? null,
          schema_version_name: s.header?.schema.version_name ?? null,
          migrations: s.header?.schema.migrations.map((m) => m.name) ?? null,
          tables: s.header?.tables.length ?? null,
          rows: s.header?.total_rows ?? null,
          meshctl_version: s.header?.meshctl_version ?? null,
          error: s.error,
        })),
      });
      return;
    }
    if (list.length === 0) {
      ctx.out.line(`No snapshots in ${dir} (take one with: meshctl db snapshot).`);
      return;
    }
    ctx.out.line(`Snapshots in ${dir}:`);
    ctx.out.line();
    ctx.out.line(
      table(
        ['NAME', 'CREATED', 'SCHEMA', 'ROWS', 'SIZE'],
        list.map((s) =>
          s.header
            ? [
                s.name,
                s.header.created_at.replace(/\.\d{3}Z$/, 'Z'),
                describeVersion(s.header.schema.version, s.header.schema.version_name ?? undefined),
                String(s.header.total_rows),
                formatBytes(s.size_bytes),
              ]
            : [s.name, colors.red('unreadable'), s.error ?? '', '-', formatBytes(s.size_bytes)],
        ),
      ),
    );
  }),
};

// ─── db restore ──────────────────────────────────────────────────────────────

interface RestoreArgs extends SnapshotArgs {
  snapshot: string;
  force?: boolean;
  'reset-drain'?: boolean;
}

const restoreCommand: CommandModule<GlobalArgs, RestoreArgs> = {
  command: 'restore <snapshot>',
  describe: 'Replace every registry table with a snapshot, in one transaction',
  builder: (y) =>
    dirOption(databaseOption(y))
      .positional('snapshot', {
        type: 'string',
        demandOption: true,
        describe: `A snapshot name in the directory, or a path to a ${snapshotSuffix} file`,
      })
      .option('force', {
        type: 'boolean',
        describe:
          "Restore even if the snapshot's schema differs from the database's, or registry replicas are running on it",
      })
      .option('reset-drain', {
        type: 'boolean',
        describe:
          "Take the fleet drain from the snapshot too (default: keep the database's current fleet drain, in force or not)",
      })
      .example('$0 db restore before-upgrade', 'refused while replicas run, or if the schema differs')
      .example('$0 db restore /backups/mesh-20260101-120000.jsonl.gz --force', '') as Argv<RestoreArgs>,
  handler: run<RestoreArgs>(async (args, ctx) => {
    const url = requireDatabaseUrl(args);
    const file = snapshotPath(snapshotDir(args.dir), args.snapshot);
    const started = Date.now();
    const result = await usingDatabase(
      url,
      async (db) => {
        try {
          return await restoreSnapshot(db.sql, {
            file,
            force: Boolean(args.force),
            resetDrain: Boolean(args['reset-drain']),
            warn: (text) => ctx.out.warn(text),
            onTable: (name, rows) => {
              if (!ctx.out.json) ctx.out.line(`  ${name}: ${rows} row(s)`);
            },
          });
        } catch (err) {
          if (err instanceof CliError) throw err;
          throw new CliError(`restore failed and was rolled back (nothing changed): ${describeDbError(err)}`);
        }
      },
      { timeoutSeconds: connectTimeout(args) },
    );
    const fd = result.fleetDrain;
    const drainWord = (d: FleetDrainSetting) => (d.draining ? `in force (since ${d.since ?? '?'})` : 'off');
    // On stderr too under --json: lifting (or setting) a fleet drain is never silent.
    if (!fd.kept && fd.before.draining !== fd.after.draining) {
      ctx.out.warn(
        `--reset-drain: the fleet drain went from ${drainWord(fd.before)} to the snapshot's, ${drainWord(fd.after)}`,
      );
    }
    if (ctx.out.json) {
      ctx.out.printJson({
        name: result.header.name,
        file,
        created_at: result.header.created_at,
        schema: result.header.schema,
        tables: result.tables,
        total_rows: result.totalRows,
        ledger_restored: result.ledgerRestored,
        forced: result.forced,
        fleet_drain: result.fleetDrain,
      });
      return;
    }
    ctx.out.line(
      `Restored snapshot ${result.header.name} (taken ${result.header.created_at}): ${result.totalRows} rows in ` +
        `${result.tables.length} tables, in ${((Date.now() - started) / 1000).toFixed(1)} s.`,
    );
    if (fd.kept) {
      ctx.out.line(
        `Fleet drain: kept as it was, ${drainWord(fd.after)}` +
          (fd.snapshot.draining !== fd.before.draining
            ? ` (the snapshot's: ${drainWord(fd.snapshot)}; --reset-drain takes the snapshot's)`
            : ''),
      );
    } else if (fd.before.draining === fd.after.draining) {
      ctx.out.line(`Fleet drain: ${drainWord(fd.after)} (the snapshot's, as before)`);
    }
    ctx.out.line(
      'Jobs that finished after the snapshot was taken are back in their earlier state and run again.',
    );
    ctx.out.line(
      'Start the registry replicas again. Replicas recorded in the snapshot that are not running show as stale: meshctl registry forget <replica-id>.',
    );
  }),
};

/**
 * `meshctl db …`: direct access to the registry's PostgreSQL (`--database-url`
 * or `DATABASE_URL`) for schema status, migrations, snapshots and restores.
 *
 * @example
 *   meshctl db status
 *   meshctl db snapshot --name before-upgrade && meshctl db restore before-upgrade
 */
export const dbCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'db <command>',
  describe: 'The registry database: status, migrate, snapshot, snapshots, restore (needs --database-url)',
  builder: (y) =>
    y
      .command(statusCommand)
      .command(migrateCommand)
      .command(snapshotCommand)
      .command(snapshotsCommand)
      .command(restoreCommand)
      .demandCommand(1, 'name a db command'),
  handler: () => {
    throw new UsageError('name a db command');
  },
};

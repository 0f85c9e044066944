import { mkdir } from 'node:fs/promises';
import { type BundledMigration, readBundledMigrations } from '@mesh/db';
import type { Argv, CommandModule } from 'yargs';
import { connectionFlags, type GlobalArgs } from '../cli/connection.ts';
import { run } from '../cli/context.ts';
import { CliError, exitCodes, UsageError } from '../cli/errors.ts';
import { colors, formatAge, table } from '../cli/output.ts';
import { type DatabaseArgs, databaseOption, describeDbError } from '../db/connect.ts';
import { takeSnapshot } from '../db/snapshot.ts';
import { defaultSnapshotName, snapshotDir, snapshotPath } from '../db/snapshot-file.ts';
import { parseDurationFlag } from '../doctor/duration.ts';
import type { CheckResult, CheckStatus } from '../doctor/result.ts';
import { type Fleet, fleetSourceText, readFleet } from '../upgrade/fleet.ts';
import { planUpgrade, type SnapshotFinding, type TargetMigrations } from '../upgrade/plan.ts';
import { printCheckReport } from '../upgrade/report-text.ts';
import { recentSnapshot } from '../upgrade/snapshot-recency.ts';
import { runVerify } from '../upgrade/verify.ts';
import { meshctlVersion } from '../version.ts';

const releasePattern = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/;

interface CommonArgs extends GlobalArgs, DatabaseArgs {
  to?: string;
  migrations?: string;
}

interface CheckArgs extends CommonArgs {
  to: string;
  snapshot?: boolean;
  'snapshot-max-age': string;
  dir?: string;
}

interface VerifyArgs extends CommonArgs {
  'sweep-interval': string;
  'claim-stall': string;
}

function checkTo(to: string): string {
  if (!releasePattern.test(to))
    throw new UsageError(`--to must be a release version like 0.2.0, got "${to}"`);
  return to;
}

/**
 * The target's migrations: `--migrations <dir>` (the target's @mesh/db
 * `drizzle/` folder), else this meshctl's own when it is the target version,
 * else undefined (meshctl cannot know them).
 */
function targetMigrations(args: CommonArgs, to: string): TargetMigrations | undefined {
  if (args.migrations) {
    let migrations: BundledMigration[];
    try {
      migrations = readBundledMigrations(args.migrations);
    } catch (err) {
      throw new UsageError(
        `cannot read the migrations in ${args.migrations}: ${(err as Error).message}`,
        "--migrations takes the target release's @mesh/db drizzle/ folder (meta/_journal.json, the SQL files, compatibility.json)",
      );
    }
    return { from: 'dir', dir: args.migrations, migrations };
  }
  if (to === meshctlVersion) return { from: 'meshctl', dir: null, migrations: readBundledMigrations() };
  return undefined;
}

const migrationsOption = <T>(y: Argv<T>) =>
  y.option('migrations', {
    type: 'string',
    describe:
      "The target release's migrations: its @mesh/db drizzle/ folder (default: this meshctl's own, when --to is its version)",
  });

/** ` --database-url <redacted>` when given as a flag; nothing when it comes from DATABASE_URL. */
const dbFlag = (args: DatabaseArgs, fleet: Fleet) =>
  args['database-url'] && fleet.databaseUrl ? ` --database-url ${fleet.databaseUrl}` : '';

function sources(fleet: Fleet): string[] {
  const lines = [`Fleet from ${fleetSourceText(fleet)}`];
  if (fleet.databaseUrl) lines.push(`Database ${fleet.databaseUrl}`);
  return lines;
}

// ─── upgrade check ───────────────────────────────────────────────────────────

const checkCommand: CommandModule<GlobalArgs, CheckArgs> = {
  command: 'check',
  describe:
    'Before an upgrade: can the fleet go to --to, by which procedure (rolling or fleet-drain), in which steps? Exit 0 go, 1 no-go',
  builder: (y) =>
    migrationsOption(databaseOption(y))
      .option('to', {
        type: 'string',
        demandOption: true,
        describe: 'The release to upgrade to (e.g. 0.2.0)',
      })
      .option('snapshot', {
        type: 'boolean',
        describe: 'Take a snapshot now (meshctl db snapshot) instead of requiring a recent one',
      })
      .option('snapshot-max-age', {
        type: 'string',
        default: '24h',
        describe:
          'A snapshot older than this does not count as recent (it must also postdate the last migration)',
      })
      .option('dir', {
        type: 'string',
        describe: 'Snapshot directory, as for meshctl db snapshot [env: MESH_SNAPSHOT_DIR]',
      })
      .example(
        '$0 upgrade check --to 0.2.0 --admin-url http://registry-a:9000 --database-url postgres://…',
        '',
      )
      .example('$0 upgrade check --to 0.2.0 --snapshot --json', 'take the snapshot too; machine-readable')
      .example(
        '$0 upgrade check --to 0.3.0 --migrations ./node_modules/@mesh/db/drizzle',
        "another release's migrations (or run that release's meshctl)",
      ) as Argv<CheckArgs>,
  handler: run<CheckArgs>(async (args, ctx) => {
    const to = checkTo(args.to);
    const maxAgeMs = parseDurationFlag('--snapshot-max-age', args['snapshot-max-age']);
    const target = targetMigrations(args, to);
    const fleet = await readFleet(args, ctx);
    try {
      let snapshot: SnapshotFinding | null | undefined;
      let notes: string[] = [];
      if (fleet.db && fleet.applied) {
        const dir = snapshotDir(args.dir);
        if (args.snapshot) {
          const name = defaultSnapshotName(new Date()).replace(/^mesh-/, `before-${to}-`);
          await mkdir(dir, { recursive: true, mode: 0o700 });
          const file = snapshotPath(dir, name);
          const taken = await takeSnapshot(fleet.db.sql, { file, name, meshctlVersion }).catch((err) => {
            if (err instanceof CliError) throw err;
            throw new CliError(`snapshot failed (nothing was written): ${describeDbError(err)}`);
          });
          snapshot = {
            name,
            file,
            created_at: taken.header.created_at,
            age_s: 0,
            schema_version: taken.header.schema.version,
            taken_now: true,
          };
          if (!ctx.out.json) ctx.out.line(`Took snapshot ${name} (${file}).`);
        } else {
          const [row] = await fleet.db.sql<{ now: Date }[]>`select now() as now`;
          const r = await recentSnapshot(dir, fleet.applied, row?.now ?? new Date(), maxAgeMs);
          snapshot = r.found;
          notes = r.notes;
        }
      }
      const report = planUpgrade({
        to,
        meshctlVersion,
        target,
        replicas: fleet.replicas,
        fleetDraining: fleet.fleetDraining,
        applied: fleet.applied,
        agents: fleet.agents,
        snapshot,
        snapshotNotes: notes,
        snapshotMaxAgeText: formatAge(maxAgeMs),
        flags: connectionFlags(args),
        dbFlag: dbFlag(args, fleet),
      });
      if (ctx.out.json)
        ctx.out.printJson({
          ...report,
          fleet_source: fleet.source,
          registry_url: fleet.registryUrl,
          database_url: fleet.databaseUrl,
        });
      else printCheckReport(ctx.out, report, sources(fleet));
      if (!report.go) process.exitCode = exitCodes.failed;
    } finally {
      await fleet.db?.close();
    }
  }),
};

// ─── upgrade verify ──────────────────────────────────────────────────────────

const label: Record<CheckStatus, string> = {
  ok: colors.green('ok'),
  warn: colors.yellow('WARN'),
  fail: colors.red('FAIL'),
  skip: colors.dim('skip'),
};

const verifyCommand: CommandModule<GlobalArgs, VerifyArgs> = {
  command: 'verify',
  describe:
    'After an upgrade: every live replica on --to and on the database schema, none stale, no drain left, no stuck job, claims flowing. Exit 0 ok, 1 not',
  builder: (y) =>
    migrationsOption(databaseOption(y))
      .option('to', {
        type: 'string',
        describe: `The release the fleet should run (default: this meshctl's, ${meshctlVersion})`,
      })
      .option('sweep-interval', {
        type: 'string',
        default: '5s',
        describe: "The registry's --sweep-interval: a lease expired longer ago than this is stuck",
      })
      .option('claim-stall', {
        type: 'string',
        default: '60s',
        describe:
          'Jobs queued longer than this while a healthy provider holds none of them: claims are not flowing',
      })
      .example('$0 upgrade verify --admin-url http://registry-a:9000 --database-url postgres://…', '')
      .example(
        '$0 upgrade verify --to 0.2.0 --json',
        '{"ok", "checks": [{"name", "status", "summary", "problems"}]}',
      ) as Argv<VerifyArgs>,
  handler: run<VerifyArgs>(async (args, ctx) => {
    const to = checkTo(args.to ?? meshctlVersion);
    const sweepIntervalMs = parseDurationFlag('--sweep-interval', args['sweep-interval']);
    const claimStallMs = parseDurationFlag('--claim-stall', args['claim-stall']);
    const target = targetMigrations(args, to);
    if (!target) {
      throw new UsageError(
        `this meshctl is ${meshctlVersion}: it does not know the migrations of ${to}`,
        `Run meshctl ${to}'s upgrade verify, or pass --migrations <dir of @mesh/db ${to}>/drizzle.`,
      );
    }
    const fleet = await readFleet(args, ctx);
    let checks: CheckResult[];
    try {
      checks = await runVerify(fleet, {
        to,
        migrations: target.migrations,
        sweepIntervalMs,
        claimStallMs,
        connectionFlags: connectionFlags(args),
        http: fleet.source === 'registry' ? ctx.registry() : undefined,
      });
    } finally {
      await fleet.db?.close();
    }
    const failed = checks.filter((c) => c.status === 'fail').length;
    if (ctx.out.json) {
      ctx.out.printJson({
        ok: failed === 0,
        to,
        fleet_source: fleet.source,
        registry_url: fleet.registryUrl,
        database_url: fleet.databaseUrl,
        checks,
      });
    } else {
      ctx.out.line(`Upgrade verify: the fleet on ${to}`);
      for (const s of sources(fleet)) ctx.out.line(s);
      ctx.out.line();
      ctx.out.line(
        table(
          ['', 'CHECK', 'RESULT'],
          checks.map((c) => [label[c.status], c.title, c.summary]),
          { rule: false },
        ).replace(/^.*\n/, ''),
      );
      for (const c of checks.filter((x) => x.problems.length > 0)) {
        ctx.out.line();
        ctx.out.line(`${label[c.status]} ${c.title}:`);
        for (const p of c.problems) {
          ctx.out.line(`  ${p.subject}: ${p.message}`);
          if (p.fix) ctx.out.line(`    fix:  ${p.fix}`);
          if (p.hint) ctx.out.line(`    hint: ${p.hint}`);
        }
      }
      ctx.out.line();
      ctx.out.line(
        failed
          ? colors.red(`NOT VERIFIED: ${failed} check(s) failed.`)
          : colors.green(`VERIFIED: the fleet runs ${to}.`),
      );
    }
    if (failed) process.exitCode = exitCodes.failed;
  }),
};

/**
 * `meshctl upgrade check|verify`: before an upgrade, the verdict and the
 * procedure (DESIGN.md §7); after it, whether the fleet got there.
 *
 * @example
 *   meshctl upgrade check --to 0.2.0 --snapshot
 *   meshctl upgrade verify --to 0.2.0
 */
export const upgradeCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'upgrade <command>',
  describe: 'Upgrades: check (before: go/no-go, rolling or fleet-drain, the steps) and verify (after)',
  builder: (y) => y.command(checkCommand).command(verifyCommand).demandCommand(1, 'name an upgrade command'),
  handler: () => {
    throw new UsageError('name an upgrade command');
  },
};

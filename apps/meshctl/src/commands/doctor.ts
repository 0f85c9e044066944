import type { Argv, CommandModule } from 'yargs';
import { connectionFlags, type GlobalArgs } from '../cli/connection.ts';
import { run } from '../cli/context.ts';
import { exitCodes } from '../cli/errors.ts';
import { colors, table } from '../cli/output.ts';
import {
  type DatabaseArgs,
  databaseOption,
  databaseUrlFrom,
  openDatabase,
  redactUrl,
} from '../db/connect.ts';
import { type CheckResult, type CheckStatus, runChecks } from '../doctor/checks.ts';
import { parseDurationFlag } from '../doctor/duration.ts';
import { verdictTable } from '../upgrade/compat-table.ts';

interface DoctorArgs extends GlobalArgs, DatabaseArgs {
  'sweep-interval': string;
  'max-clock-skew': string;
}

const label: Record<CheckStatus, string> = {
  ok: colors.green('ok'),
  warn: colors.yellow('WARN'),
  fail: colors.red('FAIL'),
  skip: colors.dim('skip'),
};

function print(out: { line(text?: string): void }, checks: CheckResult[]): void {
  out.line(
    table(
      ['', 'CHECK', 'RESULT'],
      checks.map((c) => [label[c.status], c.title, c.summary]),
      { rule: false },
    ).replace(/^.*\n/, ''),
  );
  const verdicts = checks.find((c) => c.name === 'schema')?.details?.replicas ?? [];
  if (verdicts.length > 0) {
    out.line();
    out.line('Schema compatibility per live replica (can it run on this database?):');
    out.line(verdictTable(verdicts));
  }
  const failing = checks.filter((c) => c.problems.length > 0);
  for (const c of failing) {
    out.line();
    out.line(`${label[c.status]} ${c.title}:`);
    for (const p of c.problems) {
      out.line(`  ${p.subject}: ${p.message}`);
      if (p.fix) out.line(`    fix:  ${p.fix}`);
      if (p.hint) out.line(`    hint: ${p.hint}`);
    }
  }
}

/**
 * `meshctl doctor`: checks the registry fleet (and, with `--database-url`, the
 * database) and prints one line per check, then each problem with the command
 * that fixes it. Exit 0 when nothing failed (warnings and skips allowed), 1
 * when a check failed, 2 when the doctor itself could not run (bad flags).
 *
 * @example
 *   meshctl doctor --registry-url http://registry:8000 --database-url postgres://…
 */
export const doctorCommand: CommandModule<GlobalArgs, DoctorArgs> = {
  command: 'doctor',
  describe: 'Check the registry fleet and database; print the command that fixes each problem',
  builder: (y) =>
    databaseOption(
      y,
      'PostgreSQL URL of the registry database, for the checks that need it [env: DATABASE_URL]',
    )
      .option('sweep-interval', {
        type: 'string',
        default: '5s',
        describe: "The registry's --sweep-interval: a lease expired longer ago than this is stuck",
      })
      .option('max-clock-skew', {
        type: 'string',
        default: '2s',
        describe: "Largest tolerated difference between a replica's clock and the database's",
      })
      .example('$0 doctor', 'the registry at localhost:8000, without database checks')
      .example('$0 doctor --registry-url http://registry:8000 --database-url postgres://…', 'every check')
      .example(
        '$0 doctor --json',
        '{"ok": …, "checks": [{"name", "status", "summary", "problems"}]}',
      ) as Argv<DoctorArgs>,
  handler: run<DoctorArgs>(async (args, ctx) => {
    const sweepIntervalMs = parseDurationFlag('--sweep-interval', args['sweep-interval']);
    const maxClockSkewMs = parseDurationFlag('--max-clock-skew', args['max-clock-skew']);
    const databaseUrl = databaseUrlFrom(args);
    const http = ctx.registry();
    const checks = await runChecks({
      http,
      databaseUrl,
      openDatabase: (url) => openDatabase(url, { timeoutSeconds: Math.min(args.timeout ?? 30, 10) }),
      sweepIntervalMs,
      maxClockSkewMs,
      connectionFlags: connectionFlags(args),
    });
    const count = (s: CheckStatus) => checks.filter((c) => c.status === s).length;
    const failed = count('fail');
    if (ctx.out.json) {
      ctx.out.printJson({
        ok: failed === 0,
        registry_url: http.url,
        database_url: databaseUrl ? redactUrl(databaseUrl) : null,
        summary: { ok: count('ok'), warn: count('warn'), fail: failed, skip: count('skip') },
        checks,
      });
    } else {
      ctx.out.line(
        `Registry ${http.url}${databaseUrl ? `, database ${redactUrl(databaseUrl)}` : ' (no --database-url: database checks skipped)'}`,
      );
      ctx.out.line();
      print(ctx.out, checks);
      ctx.out.line();
      const parts = [`${count('ok')} ok`];
      if (count('warn')) parts.push(`${count('warn')} warning(s)`);
      if (count('skip')) parts.push(`${count('skip')} skipped`);
      ctx.out.line(
        failed
          ? colors.red(`${failed} check(s) failed (${parts.join(', ')}).`)
          : colors.green(`All checks passed (${parts.join(', ')}).`),
      );
    }
    if (failed) process.exitCode = exitCodes.failed;
  }),
};

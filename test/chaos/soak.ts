import { parseArgs } from 'node:util';
import { runChaos } from './harness.ts';

/**
 * `pnpm chaos --minutes N --seed S`: the chaos suite's run (test/chaos/harness.ts)
 * for longer, with the same faults and the same job-log checker. Prints the
 * faults injected by kind, the jobs checked and every violation; exits 1 on
 * a violation.
 */
const usage = `Usage: pnpm chaos [--minutes N] [--seed S]

Runs three registry replicas and four SDK agents on a PostgreSQL of its own,
behind a fault proxy, under a job stream, and injects faults for N minutes
(default 5): replicas killed and paused, agents killed and paused past their
leases, PostgreSQL restarted, partitions, connections reset, a slow database.
Then checks the log of every operation: every job completed exactly once, no
stale write accepted, attempts within the retry budget, nothing stuck.

Options:
  --minutes N   how long faults are injected (default 5)
  --seed S      PRNG seed, for replay (default: random, printed)
  -h, --help    this text

Exit codes: 0 no violation; 1 violations (listed); 2 usage.`;

let values: { minutes?: string; seed?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      minutes: { type: 'string' },
      seed: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (err) {
  process.stderr.write(`pnpm chaos: ${(err as Error).message}\n\n${usage}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
const minutes = Number(values.minutes ?? 5);
const seed = Number(values.seed ?? Date.now() % 1_000_000);
if (!(minutes > 0) || !Number.isInteger(seed)) {
  process.stderr.write(`pnpm chaos: --minutes must be a positive number and --seed an integer\n\n${usage}\n`);
  process.exit(2);
}
console.log(
  `[chaos] soak ${minutes} min, seed ${seed} (replay: pnpm chaos --minutes ${minutes} --seed ${seed})`,
);
const started = Date.now();
const summary = await runChaos({ seconds: Math.round(minutes * 60), seed, log: (line) => console.log(line) });
const total = Object.values(summary.faults).reduce((a, b) => a + b, 0);
console.log(
  `\nchaos soak: seed ${seed}, ${minutes} min of faults, ${Math.round((Date.now() - started) / 1000)} s in all`,
);
console.log(`faults injected: ${total}`);
for (const [kind, n] of Object.entries(summary.faults).sort()) console.log(`  ${kind.padEnd(18)} ${n}`);
console.log(
  `jobs checked: ${summary.jobs} (claims ${summary.claims}, stale writes refused ${summary.rejected_stale_writes}, completions whose notice died with a killed agent ${summary.completions_unlogged_owner_killed})`,
);
console.log(`violations: ${summary.violations.length}`);
for (const v of summary.violations) console.log(`  ${v}`);
process.exit(summary.violations.length > 0 ? 1 : 0);

import { describeVersion } from '@mesh/db';
import type { Output } from '../cli/output.ts';
import { colors, formatAge, table } from '../cli/output.ts';
import type { CheckReport, Finding } from './plan.ts';

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

function findings(out: Output, title: string, list: Finding[], paint: (s: string) => string): void {
  if (list.length === 0) return;
  out.line();
  out.line(paint(title));
  for (const f of list) {
    out.line(`  - ${f.message}`);
    if (f.fix) out.line(`    fix: ${f.fix}`);
  }
}

/** `meshctl upgrade check`'s text output (the JSON is the report itself). */
export function printCheckReport(out: Output, r: CheckReport, sources: string[]): void {
  out.line(
    `Upgrade check: to ${r.to} (this meshctl: ${r.meshctl_version}; target migrations: ${
      r.target_migrations
        ? r.target_migrations.from === 'meshctl'
          ? `bundled with this meshctl, ${r.target_migrations.count}`
          : `${r.target_migrations.dir}, ${r.target_migrations.count}`
        : 'unknown'
    })`,
  );
  for (const s of sources) out.line(s);
  out.line();
  out.line(
    r.database
      ? `Database: schema ${describeVersion(r.database.version, r.database.name ?? undefined)}${r.fleet_draining ? '; fleet drain in force' : ''}`
      : 'Database: not read (no --database-url)',
  );
  if (r.replicas.length === 0) out.line('Replicas: none recorded');
  else
    out.line(
      table(
        ['REPLICA', 'STATE', 'VERSION', 'SCHEMA', 'DRAINING', 'UNKNOWN TO IT', 'VERDICT'],
        r.replicas.map((v) => [
          v.replica_id,
          v.liveness,
          v.version,
          String(v.schema_version),
          yesNo(v.draining),
          v.unknown.length ? v.unknown.join(', ') : '-',
          r.database ? (v.runs ? colors.green(v.verdict) : colors.red(v.verdict)) : '-',
        ]),
      ),
    );
  const a = r.agents;
  out.line(
    a
      ? `Agents: ${a.healthy} healthy; oldest SDK ${a.oldest_sdk ?? '-'}${a.legacy ? ` (${a.legacy} without an SDK version: older SDKs or raw clients)` : ''}`
      : 'Agents: not read',
  );
  out.line();
  if (r.pending === null) out.line(`Pending migrations of ${r.to}: unknown`);
  else if (r.pending.length === 0) out.line(`Pending migrations of ${r.to}: none`);
  else {
    out.line(`Pending migrations of ${r.to}:`);
    out.line(
      table(
        [
          'MIGRATION',
          'COMPATIBILITY',
          'RELEASE',
          'LIVE REPLICAS',
          `OLDEST SDK${a?.oldest_sdk ? ` (${a.oldest_sdk})` : ''}`,
        ],
        r.pending.map((p) => [
          p.name,
          p.compatibility === 'breaking' ? `breaking (>= ${p.oldest_compatible ?? p.release})` : 'compatible',
          p.release,
          p.replicas.length === 0
            ? '-'
            : p.rolling_safe
              ? colors.green('all run on it')
              : colors.red(
                  `cannot run: ${p.replicas
                    .filter((x) => !x.compatible)
                    .map((x) => `${x.replica_id} (${x.version})`)
                    .join(', ')}`,
                ),
          p.sdk ? (p.sdk.compatible ? 'ok' : colors.yellow(p.sdk.why)) : '-',
        ]),
      ),
    );
    for (const p of r.pending) out.line(`  ${p.name}: ${p.reason}`);
  }
  out.line();
  const s = r.snapshot;
  out.line(
    s
      ? `Snapshot: ${s.name} (${s.taken_now ? 'taken now' : `taken ${formatAge(s.age_s * 1000)} ago`}, schema ${s.schema_version}): ${s.file}`
      : 'Snapshot: none recent',
  );
  out.line();
  out.line(
    r.procedure
      ? `Procedure: ${colors.bold(r.procedure)}: ${r.procedure_reason}`
      : `Procedure: ${r.procedure_reason}`,
  );
  if (r.steps.length > 0) {
    out.line('Steps:');
    r.steps.forEach((step, i) => {
      out.line(`  ${String(i + 1).padStart(2)}. ${step}`);
    });
  }
  findings(out, 'Warnings:', r.warnings, colors.yellow);
  out.line();
  if (r.go) out.line(colors.green(`GO: the upgrade to ${r.to} can start (${r.procedure}).`));
  else {
    out.line(colors.red(`NO-GO: ${r.reasons.length} reason(s):`));
    for (const f of r.reasons) {
      out.line(`  - ${f.message}`);
      if (f.fix) out.line(`    fix: ${f.fix}`);
    }
  }
}

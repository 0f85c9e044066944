import { type AppliedMigration, type BundledMigration, blockingMigrations, releaseAtLeast } from '@mesh/db';
import type { ReplicaInfo } from '@mesh/protocol';
import { replicaFlags } from '../cli/fleet.ts';
import {
  type PendingMigrationVerdict,
  pendingMigrationVerdicts,
  type ReplicaSchemaVerdict,
  replicaSchemaVerdict,
} from './compat.ts';
import type { AgentVersions } from './fleet.ts';

// `meshctl upgrade check`: from the facts read (fleet, ledger, target's
// migrations, snapshot), the verdict (go / no-go with reasons and fixes), the
// procedure the upgrade needs and its steps as commands. Pure: the command
// reads, this judges.

export type Procedure = 'rolling' | 'fleet-drain' | 'none';

/** Why the upgrade must not start yet, and what to do about it. */
export interface Finding {
  code: string;
  message: string;
  fix: string | null;
}

/** A snapshot `upgrade check` found (or took), judged for recency. */
export interface SnapshotFinding {
  name: string;
  file: string;
  created_at: string;
  age_s: number;
  schema_version: number;
  taken_now: boolean;
}

/** The target release's migrations, and where meshctl read them. */
export interface TargetMigrations {
  from: 'meshctl' | 'dir';
  dir: string | null;
  migrations: BundledMigration[];
}

export interface CheckInput {
  to: string;
  meshctlVersion: string;
  /** Undefined when meshctl cannot know them (another version, no --migrations). */
  target: TargetMigrations | undefined;
  replicas: ReplicaInfo[];
  fleetDraining: boolean;
  /** The ledger; null without a database. */
  applied: AppliedMigration[] | null;
  agents: AgentVersions | null;
  /** The newest recent snapshot; null when none is recent; undefined when it could not be judged. */
  snapshot: SnapshotFinding | null | undefined;
  /** Why no snapshot counts (each one seen and why it is not recent enough). */
  snapshotNotes: string[];
  snapshotMaxAgeText: string;
  /** Connection flags to append to printed commands. */
  flags: string;
  /** The database flag to append to printed db commands (never the URL's password). */
  dbFlag: string;
}

export interface CheckReport {
  go: boolean;
  to: string;
  meshctl_version: string;
  target_migrations: { from: 'meshctl' | 'dir'; dir: string | null; count: number } | null;
  /** Every replica not stopped: its schema verdict, plus liveness and drain. */
  replicas: (ReplicaSchemaVerdict & { liveness: 'live' | 'stale'; draining: boolean })[];
  fleet_draining: boolean;
  database: { version: number; name: string | null } | null;
  agents: AgentVersions | null;
  pending: PendingMigrationVerdict[] | null;
  snapshot: SnapshotFinding | null;
  procedure: Procedure | null;
  procedure_reason: string;
  steps: string[];
  reasons: Finding[];
  warnings: Finding[];
}

function rollingSteps(i: CheckInput, live: ReplicaInfo[]): string[] {
  const steps: string[] = [];
  for (const r of live) {
    const url = replicaFlags(r) || i.flags;
    steps.push(
      `meshctl registry drain${url} --wait --own-claims`,
      `# stop ${r.replica_id} (SIGTERM), start it on ${i.to} with the same MESH_REPLICA_ID=${r.replica_id}` +
        (r.main_url ? `; wait until ${r.main_url}/ready answers 200` : '; wait until its /ready answers 200'),
      `meshctl registry resume${url}`,
    );
  }
  steps.push(`meshctl upgrade verify --to ${i.to}${i.flags}${i.dbFlag}`);
  return steps;
}

function fleetDrainSteps(i: CheckInput, live: ReplicaInfo[]): string[] {
  const ids = live.map((r) => r.replica_id).join(', ') || 'every replica';
  return [
    `meshctl registry drain --all --persist --wait${i.flags}`,
    `# stop ${ids} (every old replica: the breaking migration leaves them unable to run)`,
    `# start the replicas on ${i.to}: the first applies the migrations at boot; each comes back draining (the fleet drain holds)`,
    `meshctl upgrade verify --to ${i.to}${i.flags}${i.dbFlag}`,
    `meshctl registry resume --all${i.flags}`,
    "# if it must be undone: stop every replica; with the old release's meshctl, `db migrate` an empty database and `db restore <snapshot>` into it; start the old release on that database (docs/upgrading.md)",
  ];
}

/**
 * Judges an upgrade to `i.to`: the per-replica schema verdicts now, each
 * pending migration of the target against every live replica (and the oldest
 * agent SDK), whether the target can run on the database, a recent snapshot,
 * and the procedure: `rolling` when every pending migration is compatible with
 * every live replica, else `fleet-drain`.
 */
export function planUpgrade(i: CheckInput): CheckReport {
  const reasons: Finding[] = [];
  const warnings: Finding[] = [];
  const live = i.replicas.filter((r) => r.live);
  const applied = i.applied ?? [];
  const top = applied.reduce<AppliedMigration | undefined>(
    (a, m) => (!a || m.idx > a.idx ? m : a),
    undefined,
  );
  const replicas = i.replicas
    .filter((r) => !r.stopped_at)
    .map((r) => {
      const liveness: 'live' | 'stale' = r.live ? 'live' : 'stale';
      return { ...replicaSchemaVerdict(r, applied), liveness, draining: r.draining };
    });

  reasons.push(...missingInputs(i));
  warnings.push(...fleetWarnings(i, replicas, live));
  let pending: PendingMigrationVerdict[] | null = null;
  if (i.target && i.applied !== null) {
    const judged = judgeMigrations(i, i.target, applied, live);
    reasons.push(...judged.reasons);
    warnings.push(...judged.warnings);
    pending = judged.pending;
  }
  const { procedure, procedureReason, steps } = chooseProcedure(i, pending, live);

  if (i.snapshot === null && procedure !== 'none') {
    reasons.push({
      code: 'no_recent_snapshot',
      message: `no recent snapshot (taken after the last migration and within ${i.snapshotMaxAgeText})${i.snapshotNotes.length ? `: ${i.snapshotNotes.join('; ')}` : ''}`,
      fix: `meshctl db snapshot --name before-${i.to}${i.dbFlag} (or run this check with --snapshot)`,
    });
  }
  return {
    go: reasons.length === 0,
    to: i.to,
    meshctl_version: i.meshctlVersion,
    target_migrations: i.target
      ? { from: i.target.from, dir: i.target.dir, count: i.target.migrations.length }
      : null,
    replicas,
    fleet_draining: i.fleetDraining,
    database: i.applied === null ? null : { version: top ? top.idx + 1 : 0, name: top?.name ?? null },
    agents: i.agents,
    pending,
    snapshot: i.snapshot ?? null,
    procedure,
    procedure_reason: procedureReason,
    steps,
    reasons,
    warnings,
  };
}

/** No-go reasons for what meshctl was not given: a database, the target's migrations. */
function missingInputs(i: CheckInput): Finding[] {
  const reasons: Finding[] = [];
  if (i.applied === null) {
    reasons.push({
      code: 'no_database',
      message: 'no database given: the migration ledger and the snapshots cannot be checked',
      fix: `pass --database-url postgres://… (or set DATABASE_URL) and run again`,
    });
  }
  if (!i.target) {
    reasons.push({
      code: 'target_migrations_unknown',
      message: `this meshctl is ${i.meshctlVersion}: it does not know the migrations of ${i.to}`,
      fix:
        `install meshctl ${i.to} first (npm install -g @mesh/meshctl@${i.to}) and run its meshctl upgrade check --to ${i.to}, ` +
        `or pass --migrations <dir of @mesh/db ${i.to}>/drizzle`,
    });
  }
  return reasons;
}

/** Warnings about the fleet as it is: stale replicas, replicas that cannot run now, a rollback, nothing live. */
function fleetWarnings(i: CheckInput, replicas: CheckReport['replicas'], live: ReplicaInfo[]): Finding[] {
  const warnings: Finding[] = [];
  for (const r of replicas.filter((x) => x.liveness === 'stale')) {
    warnings.push({
      code: 'stale_replica',
      message: `replica ${r.replica_id} (${r.version}) is stale: not heard from, never stopped; if it comes back it runs ${r.version}`,
      fix: `meshctl registry forget ${r.replica_id}${i.flags}`,
    });
  }
  for (const r of replicas.filter((x) => x.liveness === 'live' && !x.runs)) {
    warnings.push({
      code: 'replica_cannot_run',
      message: `replica ${r.replica_id} (${r.version}, schema ${r.schema_version}): ${r.verdict}`,
      fix: `replace it with ${i.to} first (it cannot serve now)`,
    });
  }
  for (const r of live.filter((x) => !releaseAtLeast(i.to, x.version))) {
    warnings.push({
      code: 'downgrade',
      message: `replica ${r.replica_id} runs ${r.version}, newer than ${i.to}: this is a rollback`,
      fix: null,
    });
  }
  if (live.length === 0 && i.replicas.length > 0) {
    warnings.push({ code: 'no_live_replica', message: 'no live replica: nothing to roll', fix: null });
  }
  return warnings;
}

/**
 * The ledger against the target's migrations: history the target would
 * refuse, applied migrations breaking for it, and the verdict of each pending
 * one against the live replicas and the oldest agent SDK.
 */
function judgeMigrations(
  i: CheckInput,
  target: TargetMigrations,
  applied: AppliedMigration[],
  live: ReplicaInfo[],
): { pending: PendingMigrationVerdict[]; reasons: Finding[]; warnings: Finding[] } {
  const reasons: Finding[] = [];
  const warnings: Finding[] = [];
  const targetNames = new Map(target.migrations.map((m) => [m.name, m]));
  const appliedNames = new Set(applied.map((m) => m.name));
  const modified = applied.filter((m) => targetNames.has(m.name) && targetNames.get(m.name)?.hash !== m.hash);
  if (modified.length > 0) {
    reasons.push({
      code: 'history_modified',
      message: `migration(s) ${modified.map((m) => m.name).join(', ')} were applied with other SQL than ${i.to} bundles: no registry of ${i.to} would start`,
      fix: 'find the build that applied them, or restore a snapshot taken before (meshctl db restore <name>)',
    });
  }
  const blocking = blockingMigrations(applied, (m) => targetNames.has(m.name), i.to);
  for (const m of blocking) {
    reasons.push({
      code: 'target_cannot_run',
      message: `${i.to} cannot run on this database: ${m.name} is breaking for it${m.oldestCompatible ? `, needs >= ${m.oldestCompatible}` : ' (it declares no compatibility)'}`,
      fix: `upgrade to ${m.oldestCompatible ?? 'the release that applied it'} or newer, or restore a snapshot taken before ${m.name}`,
    });
  }
  const oldestSdk = i.agents?.oldest_sdk ?? null;
  const pending = pendingMigrationVerdicts(
    target.migrations.filter((m) => !appliedNames.has(m.name)),
    live,
    oldestSdk,
  );
  for (const p of pending.filter((x) => x.sdk && !x.sdk.compatible)) {
    warnings.push({
      code: 'old_sdk',
      message: `${p.name} is breaking for releases before ${p.oldest_compatible ?? p.release}; the oldest agent SDK seen is ${oldestSdk}`,
      fix: `read ${i.to}'s release notes on ${p.name}: agents reach the database only through the registry, but upgrade the SDK of agents older than ${p.oldest_compatible ?? p.release} if they say so`,
    });
  }
  return { pending, reasons, warnings };
}

/** `fleet-drain` when a pending migration breaks a live replica, `none` when nothing changes, else `rolling`; with its steps. */
function chooseProcedure(
  i: CheckInput,
  pending: PendingMigrationVerdict[] | null,
  live: ReplicaInfo[],
): { procedure: Procedure | null; procedureReason: string; steps: string[] } {
  let procedure: Procedure | null = null;
  let procedureReason = 'undecided: the target migrations or the ledger are unknown';
  let steps: string[] = [];
  if (pending) {
    const breaking = pending.filter((p) => !p.rolling_safe);
    if (breaking.length > 0) {
      procedure = 'fleet-drain';
      procedureReason = breaking
        .map(
          (p) =>
            `${p.name} is breaking for ${p.replicas
              .filter((x) => !x.compatible)
              .map((x) => `${x.replica_id} (${x.version})`)
              .join(', ')}`,
        )
        .join('; ');
      steps = fleetDrainSteps(i, live);
    } else if (pending.length === 0 && live.every((r) => r.version === i.to)) {
      procedure = 'none';
      procedureReason = `every live replica runs ${i.to} and no migration is pending`;
      steps = [`meshctl upgrade verify --to ${i.to}${i.flags}${i.dbFlag}`];
    } else {
      procedure = 'rolling';
      procedureReason =
        pending.length === 0
          ? `${i.to} brings no migration: replace the replicas one at a time`
          : `every pending migration is compatible with every live replica (${pending.map((p) => p.name).join(', ')})`;
      steps = rollingSteps(i, live);
    }
  }
  return { procedure, procedureReason, steps };
}

import { type BundledMigration, blockingMigrations, type Sql } from '@mesh/db';
import { replicaFlags } from '../cli/fleet.ts';
import type { RegistryHttp } from '../cli/http.ts';
import { formatAge } from '../cli/output.ts';
import { type JobFindings, jobsFromApi, jobsFromDatabase, noDb, stuckJobsCheck } from '../doctor/jobs.ts';
import { type CheckResult, ok, plural, problem, skip } from '../doctor/result.ts';
import { replicaSchemaVerdict } from './compat.ts';
import type { Fleet } from './fleet.ts';

// `meshctl upgrade verify`: after an upgrade, is the fleet where it should be?
// Each check is a doctor-style CheckResult; the stuck-jobs check is the
// doctor's own (doctor/jobs.ts).

export interface VerifyOptions {
  to: string;
  /** The target's migrations (this meshctl's, or --migrations). */
  migrations: BundledMigration[];
  sweepIntervalMs: number;
  claimStallMs: number;
  connectionFlags: string;
  http: RegistryHttp | undefined;
}

function versionsCheck(f: Fleet, o: VerifyOptions): CheckResult {
  const name = 'versions';
  const title = `every live replica runs ${o.to}`;
  const live = f.replicas.filter((r) => r.live);
  if (live.length === 0)
    return {
      name,
      title,
      status: 'fail',
      summary: 'no live replica',
      problems: [problem('fleet', 'no replica is live', null, `start the replicas on ${o.to}`)],
    };
  const behind = live.filter((r) => r.version !== o.to);
  if (behind.length === 0) return ok(name, title, `${plural(live.length, 'live replica')}, all on ${o.to}`);
  return {
    name,
    title,
    status: 'fail',
    summary: `${behind.map((r) => `${r.replica_id} runs ${r.version}`).join(', ')}`,
    problems: behind.map((r) => {
      const at = replicaFlags(r);
      return problem(
        r.replica_id,
        `runs ${r.version} (schema ${r.schema_version}), not ${o.to}`,
        at ? `meshctl registry drain${at} --wait --own-claims` : null,
        `then restart ${r.replica_id} on ${o.to}`,
      );
    }),
  };
}

function schemaCheck(f: Fleet, o: VerifyOptions): CheckResult {
  const name = 'schema';
  const title = "every live replica on the database's schema";
  const targetVersion = o.migrations.length;
  const live = f.replicas.filter((r) => r.live);
  const problems = [];
  if (f.applied === null) {
    // Without the ledger: each replica's schema against the target's.
    for (const r of live.filter((x) => x.schema_version !== targetVersion))
      problems.push(
        problem(r.replica_id, `knows schema ${r.schema_version}; ${o.to} knows ${targetVersion}`),
      );
    if (problems.length === 0)
      return ok(
        name,
        title,
        `every live replica knows schema ${targetVersion} (${noDb}: the ledger was not read)`,
      );
    return {
      name,
      title,
      status: 'fail',
      summary: `${plural(problems.length, 'replica')} on another schema`,
      problems,
    };
  }
  const applied = f.applied;
  const names = new Set(applied.map((m) => m.name));
  const pending = o.migrations.filter((m) => !names.has(m.name));
  const known = new Set(o.migrations.map((m) => m.name));
  if (pending.length > 0) {
    problems.push(
      problem(
        'database',
        `${o.to}'s migration(s) ${pending.map((m) => m.name).join(', ')} not applied`,
        null,
        `a replica of ${o.to} applies them at boot (restart one), or run meshctl db migrate with meshctl ${o.to}`,
      ),
    );
  }
  for (const m of blockingMigrations(applied, (x) => known.has(x.name), o.to)) {
    problems.push(
      problem(
        'database',
        `${m.name} is breaking for ${o.to}${m.oldestCompatible ? `, needs >= ${m.oldestCompatible}` : ''}`,
        null,
        'the database is newer than the target: upgrade further, or restore a snapshot',
      ),
    );
  }
  for (const r of live) {
    const v = replicaSchemaVerdict(r, applied);
    if (v.state !== 'at_schema')
      problems.push(
        problem(
          r.replica_id,
          `${r.version}, schema ${r.schema_version}: ${v.verdict}`,
          null,
          `restart it on ${o.to}`,
        ),
      );
  }
  const top = applied.reduce((n, m) => Math.max(n, m.idx + 1), 0);
  if (problems.length === 0)
    return ok(
      name,
      title,
      `database at schema ${top}; ${plural(live.length, 'live replica')} on it; nothing pending, nothing blocking`,
    );
  return {
    name,
    title,
    status: 'fail',
    summary: `database at schema ${top}; ${plural(problems.length, 'problem')}`,
    problems,
  };
}

function staleCheck(f: Fleet, o: VerifyOptions): CheckResult {
  const stale = f.replicas.filter((r) => r.stale);
  const title = 'no stale replica';
  if (stale.length === 0) return ok('stale-replicas', title, 'none');
  return {
    name: 'stale-replicas',
    title,
    status: 'fail',
    summary: `${plural(stale.length, 'replica')} not heard from and never stopped: ${stale.map((r) => `${r.replica_id} (${r.version})`).join(', ')}`,
    problems: stale.map((r) =>
      problem(
        r.replica_id,
        `last seen ${r.last_seen_at}, ${r.version}: an old replica left behind, or one that died`,
        `meshctl registry forget ${r.replica_id}${o.connectionFlags}`,
        'if it is only paused or cut off it comes back by itself; forget it once it is gone',
      ),
    ),
  };
}

function drainingCheck(f: Fleet, o: VerifyOptions): CheckResult {
  const title = 'no drain left behind';
  const draining = f.replicas.filter((r) => r.live && r.draining);
  if (!f.fleetDraining && draining.length === 0)
    return ok('draining', title, 'every live replica dispatches');
  return {
    name: 'draining',
    title,
    status: 'warn',
    summary: f.fleetDraining
      ? 'the fleet drain is in force: no claims are handed out'
      : `${draining.map((r) => r.replica_id).join(', ')} still draining`,
    problems: [
      problem(
        f.fleetDraining ? 'fleet' : draining.map((r) => r.replica_id).join(', '),
        'left draining after the upgrade? (intended only until the upgrade is verified)',
        `meshctl registry resume --all${o.connectionFlags}`,
      ),
    ],
  };
}

/**
 * Claims flowing, kept simple: a capability fails when claimable jobs have
 * waited longer than the stall limit while a healthy agent that provides it
 * holds none of its jobs (an idle provider that should have claimed). Busy
 * providers (holding its jobs) are not a stall. Judged on the database clock;
 * skipped while the fleet drains (claims are paused on purpose).
 */
async function claimsFlowingCheck(f: Fleet, o: VerifyOptions): Promise<CheckResult> {
  const name = 'claims-flowing';
  const title = 'claims flowing';
  const limit = formatAge(o.claimStallMs);
  if (!f.db || !f.applied?.length) return skip(name, title, f.db ? 'skipped: no registry schema' : noDb);
  const live = f.replicas.filter((r) => r.live);
  if (f.fleetDraining || (live.length > 0 && live.every((r) => r.draining)))
    return skip(name, title, 'skipped: every live replica drains (claims paused on purpose)');
  const stalled = await stalledCapabilities(f.db.sql, o.claimStallMs / 1000);
  if (stalled.length === 0)
    return ok(name, title, `no capability with jobs queued over ${limit} while a healthy provider sits idle`);
  return {
    name,
    title,
    status: 'fail',
    summary: `${plural(stalled.length, 'capability')} with jobs queued over ${limit} and an idle healthy provider`,
    problems: stalled.map((s) =>
      problem(
        s.capability,
        `${plural(s.queued, 'job')} queued, the oldest for ${formatAge(s.waited_s * 1000)}; ${plural(s.idle, 'healthy provider')} holding none of them`,
        null,
        "look at the providers' logs (do they reach the upgraded registry?) and meshctl registry status --all",
      ),
    ),
  };
}

async function stalledCapabilities(sql: Sql, stallSeconds: number) {
  return sql<{ capability: string; queued: number; waited_s: number; idle: number }[]>`
    with queued as (
      select capability, count(*)::int as queued,
             extract(epoch from now() - min(coalesce(last_heartbeat_at, submitted_at)))::float8 as waited_s
      from jobs
      where status = 'working' and owner_instance_id is null and attempt_count <= max_retries
      group by capability
    ), idle as (
      select c.capability, count(distinct a.agent_id)::int as idle
      from agent_capabilities c join agents a on a.agent_id = c.agent_id
      where a.status = 'healthy'
        and not exists (select 1 from jobs j
                        where j.owner_instance_id = a.agent_id and j.capability = c.capability
                          and j.status in ('working', 'input_required'))
      group by c.capability
    )
    select q.capability, q.queued, q.waited_s, i.idle
    from queued q join idle i using (capability)
    where q.waited_s > ${stallSeconds}
    order by q.capability`;
}

/** Runs every verify check; never throws for what it finds. */
export async function runVerify(f: Fleet, o: VerifyOptions): Promise<CheckResult[]> {
  let found: JobFindings | string;
  if (f.db && f.applied && f.applied.length > 0) found = await jobsFromDatabase(f.db.sql, o.sweepIntervalMs);
  else if (o.http && f.health)
    found = await jobsFromApi({ http: o.http, health: f.health, sweepIntervalMs: o.sweepIntervalMs });
  else found = `${noDb}, and no registry was asked`;
  return [
    versionsCheck(f, o),
    schemaCheck(f, o),
    staleCheck(f, o),
    drainingCheck(f, o),
    stuckJobsCheck(found, o),
    await claimsFlowingCheck(f, o),
  ];
}

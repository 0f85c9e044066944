import type { Sql } from '@mesh/db';
import type { RegistryHttp } from '../cli/http.ts';
import { formatAge } from '../cli/output.ts';
import { type CheckResult, ok, type Problem, plural, problem, skip } from './result.ts';

// Jobs and agents, from the database, else through the registry's API: the
// doctor's stuck-jobs and orphaned-claims checks, which `upgrade verify` reuses.

/** Said by a check that needs the database when none was given. */
export const noDb = 'skipped: no --database-url';

export interface JobCheckOptions {
  sweepIntervalMs: number;
  /** Connection flags to append to printed meshctl commands (` --registry-url …`). */
  connectionFlags: string;
}

/** What {@link jobsFromApi} needs: the registry, and its clock (a `/health` timestamp and when it was read). */
export interface ApiJobSource {
  http: RegistryHttp;
  health: { timestamp: string | undefined; at: number } | undefined;
  sweepIntervalMs: number;
}

export interface StuckJob {
  id: string;
  capability: string;
  owner: string;
  /** Seconds since the lease expired (stuck jobs) or since the owner's last heartbeat (orphans). */
  age_s: number;
}

export interface JobFindings {
  source: string;
  stuck: StuckJob[];
  stuckTotal: number;
  orphaned: StuckJob[];
  orphanedTotal: number;
  /** The post-outage grace is in force until then (sweeps wait on purpose). */
  graceUntil: string | null;
}

const listLimit = 50;

export async function jobsFromDatabase(sql: Sql, sweepMs: number): Promise<JobFindings> {
  const secs = sweepMs / 1000;
  const stuck = await sql<(StuckJob & { total: number })[]>`
    select id::text, capability, owner_instance_id as owner,
           extract(epoch from now() - lease_expires_at)::float8 as age_s, count(*) over ()::int as total
    from jobs
    where status in ('working', 'input_required') and owner_instance_id is not null
      and lease_expires_at < now() - make_interval(secs => ${secs})
    order by lease_expires_at, id limit ${listLimit}`;
  const orphaned = await sql<(StuckJob & { total: number })[]>`
    select j.id::text, j.capability, j.owner_instance_id as owner,
           extract(epoch from now() - a.updated_at)::float8 as age_s, count(*) over ()::int as total
    from jobs j join agents a on a.agent_id = j.owner_instance_id
    where j.status in ('working', 'input_required') and a.status = 'unhealthy'
      and a.updated_at < now() - make_interval(secs => ${secs})
    order by a.updated_at, j.id limit ${listLimit}`;
  // The registry's post-outage grace (DESIGN.md §4.7; key owned by apps/registry's agents service).
  const [grace] = await sql<{ until: string }[]>`
    select value->>'until' as until from registry_settings
    where key = 'outage_grace_until' and (value->>'until')::timestamptz > now()`;
  return {
    source: 'database',
    stuck,
    stuckTotal: stuck[0]?.total ?? 0,
    orphaned,
    orphanedTotal: orphaned[0]?.total ?? 0,
    graceUntil: grace?.until ?? null,
  };
}

interface WireJob {
  id?: string;
  job_id?: string;
  capability: string;
  status: string;
  owner_instance_id: string | null;
  lease_expires_at: number | null;
}

interface WireAgent {
  id: string;
  status: string;
  last_seen?: string;
}

/**
 * Without database access: live jobs from `GET /jobs` (up to 5,000) and agents
 * from `GET /agents`, judged by the registry's clock (its `/health` timestamp).
 * Returns a skip reason when the registry does not let us list.
 */
export async function jobsFromApi(o: ApiJobSource): Promise<JobFindings | string> {
  const health = o.health;
  const registryNow = Date.parse(health?.timestamp ?? '');
  if (!Number.isFinite(registryNow) || !health) return `${noDb}, and the registry's /health has no timestamp`;
  const now = () => registryNow + (Date.now() - health.at);
  const jobs: WireJob[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 25; page++) {
    const res = await o.http.get('/jobs', {
      query: { status: 'working,input_required', limit: 200, cursor },
    });
    if (res.status === 401)
      return 'skipped: GET /jobs needs an admin token (--admin-token or MESH_ADMIN_TOKEN)';
    if (res.status !== 200) return `skipped: GET /jobs answered ${res.status}`;
    const body = res.json<{ jobs: WireJob[]; next_cursor: string | null }>();
    jobs.push(...body.jobs);
    if (!body.next_cursor) break;
    cursor = body.next_cursor;
  }
  const agentsRes = await o.http.get('/agents');
  const agents =
    agentsRes.status === 200 ? (agentsRes.json<{ agents: WireAgent[] | null }>().agents ?? []) : [];
  const unhealthy = new Map(agents.filter((a) => a.status === 'unhealthy').map((a) => [a.id, a]));
  const t = now();
  const stuck: StuckJob[] = [];
  const orphaned: StuckJob[] = [];
  for (const j of jobs) {
    if (!j.owner_instance_id) continue;
    const id = j.id ?? j.job_id ?? '?';
    if (j.lease_expires_at && j.lease_expires_at * 1000 < t - o.sweepIntervalMs) {
      stuck.push({
        id,
        capability: j.capability,
        owner: j.owner_instance_id,
        age_s: (t - j.lease_expires_at * 1000) / 1000,
      });
    }
    const a = unhealthy.get(j.owner_instance_id);
    const seen = a?.last_seen ? Date.parse(a.last_seen) : Number.NaN;
    if (a && (!Number.isFinite(seen) || seen < t - o.sweepIntervalMs)) {
      orphaned.push({
        id,
        capability: j.capability,
        owner: j.owner_instance_id,
        age_s: Number.isFinite(seen) ? (t - seen) / 1000 : Number.NaN,
      });
    }
  }
  return {
    source: "the registry's API, by its clock",
    stuck: stuck.slice(0, listLimit),
    stuckTotal: stuck.length,
    orphaned: orphaned.slice(0, listLimit),
    orphanedTotal: orphaned.length,
    graceUntil: null,
  };
}

function jobProblems(
  jobs: StuckJob[],
  total: number,
  describe: (j: StuckJob) => string,
  o: JobCheckOptions,
): Problem[] {
  const list = jobs.map((j) =>
    problem(`job ${j.id}`, describe(j), `meshctl job reclaim ${j.id}${o.connectionFlags}`),
  );
  if (total > jobs.length)
    list.push(
      problem(
        '…',
        `and ${total - jobs.length} more`,
        null,
        'meshctl job list --status working,input_required',
      ),
    );
  return list;
}

function jobCheck(
  name: string,
  title: string,
  found: JobFindings | string,
  pick: (j: JobFindings) => { jobs: StuckJob[]; total: number },
  describe: (j: StuckJob) => string,
  okText: string,
  o: JobCheckOptions,
): CheckResult {
  if (typeof found === 'string') return skip(name, title, found);
  const { jobs, total } = pick(found);
  const via = found.source === 'database' ? '' : ` (via ${found.source})`;
  if (total === 0) return ok(name, title, `${okText}${via}`);
  if (found.graceUntil) {
    return {
      name,
      title,
      status: 'warn',
      summary: `${plural(total, 'job')}, but the registry is in its post-outage grace until ${found.graceUntil}: the sweeps act after it`,
      problems: jobProblems(jobs, total, describe, o),
    };
  }
  return {
    name,
    title,
    status: 'fail',
    summary: `${plural(total, 'job')}${via}`,
    problems: jobProblems(jobs, total, describe, o),
  };
}

const age = (s: number) => (Number.isFinite(s) ? formatAge(s * 1000) : '?');

/** The stuck-jobs check: live jobs whose lease expired longer than a sweep interval ago. */
export function stuckJobsCheck(found: JobFindings | string, o: JobCheckOptions): CheckResult {
  const sweep = formatAge(o.sweepIntervalMs);
  return jobCheck(
    'stuck-jobs',
    'stuck jobs (lease expired before the last sweep)',
    found,
    (j) => ({ jobs: j.stuck, total: j.stuckTotal }),
    (j) =>
      `${j.capability}, owner ${j.owner}: lease expired ${age(j.age_s)} ago (sweep interval ${sweep}); the lease sweep has not re-queued it`,
    `none past the sweep interval (${sweep})`,
    o,
  );
}

/** The orphaned-claims check: live jobs held by an agent unhealthy for longer than a sweep interval. */
export function orphanedClaimsCheck(found: JobFindings | string, o: JobCheckOptions): CheckResult {
  return jobCheck(
    'orphaned-claims',
    'unhealthy agents holding claims',
    found,
    (j) => ({ jobs: j.orphaned, total: j.orphanedTotal }),
    (j) =>
      `${j.capability}: owner ${j.owner} is unhealthy (silent for ${age(j.age_s)}); the orphan sweep has not re-queued it`,
    'none',
    o,
  );
}

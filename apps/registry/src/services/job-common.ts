/**
 * What the job modules share: the settings, the row type and its wire form
 * (`toJob`), the lease and retry-budget SQL fragments, the coalescing bounds,
 * the fence a refused owner write is judged by, the job errors and id check.
 * JobStore (jobs.ts) composes job-claims.ts, job-deltas.ts and job-reads.ts.
 */
import type { Sql } from '@mesh/db';
import type { ClaimedJob, Job, JobStatus } from '@mesh/protocol';
import postgres from 'postgres';
import { ApiError, isDatabaseUnavailable } from '../errors.ts';

/** Channel on which every replica hears "something happened to job X". */
export const jobChannel = 'mesh_jobs';

export interface JobSettings {
  /** Lease window for a job without max_duration, in seconds. */
  defaultLeaseSeconds: number;
  /** Refuse epoch-less owner writes. */
  requireClaimEpoch: boolean;
  /** This replica's id, recorded on the claims it hands out. */
  replicaId: string;
}

export interface JobRow {
  id: string;
  capability: string;
  status: JobStatus;
  owner_instance_id: string | null;
  claim_epoch: number;
  attempt_count: number;
  max_retries: number;
  max_duration: number | null;
  total_deadline: Date | null;
  lease_expires_at: Date | null;
  last_heartbeat_at: Date | null;
  submitted_at: Date;
  submitted_by: string;
  submitted_payload: Record<string, unknown>;
  progress: number | null;
  progress_message: string | null;
  result: unknown;
  error: string | null;
  recv_cursor: Record<string, number> | null;
}

export const seconds = (d: Date | null): number | null => (d ? Math.floor(d.getTime() / 1000) : null);

/** A claimed row as the claim statement and the handoff insert return it (lease and deadline as dates). */
export type ClaimedRow = Omit<ClaimedJob, 'lease_expires_at' | 'total_deadline'> & {
  lease: Date | null;
  deadline: Date | null;
};

/** The claim answer's job from a claimed row. */
export const toClaimedJob = (r: ClaimedRow): ClaimedJob => ({
  id: r.id,
  submitted_payload: r.submitted_payload,
  attempt_count: r.attempt_count,
  claim_epoch: r.claim_epoch,
  lease_expires_at: seconds(r.lease),
  max_duration: r.max_duration,
  recv_cursor: r.recv_cursor,
  total_deadline: seconds(r.deadline),
});
const cursorOrNull = (c: Record<string, number> | null) => (c && Object.keys(c).length > 0 ? c : null);

/** A row as the 3.7 wire's Job object. */
export function toJob(r: JobRow): Job {
  return {
    id: r.id,
    capability: r.capability,
    owner_instance_id: r.owner_instance_id,
    claim_epoch: r.claim_epoch,
    recv_cursor: cursorOrNull(r.recv_cursor),
    status: r.status,
    progress: r.progress,
    progress_message: r.progress_message,
    result: r.result ?? null,
    error: r.error,
    submitted_payload: r.submitted_payload,
    attempt_count: r.attempt_count,
    max_retries: r.max_retries,
    max_duration: r.max_duration,
    total_deadline: seconds(r.total_deadline),
    lease_expires_at: seconds(r.lease_expires_at),
    last_heartbeat_at: seconds(r.last_heartbeat_at),
    submitted_at: seconds(r.submitted_at) as number,
    submitted_by: r.submitted_by,
  };
}

/**
 * The retry-budget rule (DESIGN.md §4.5), written once for every path that
 * takes a job from its owner (release, force reclaim, lease expiry, orphan
 * sweep): within budget the job is queued again as `working` (also from
 * `input_required`), past it the job fails with `exhaustedError`. A SET list
 * for `update jobs`.
 */
export const requeueOrFail = (sql: Sql, exhaustedError: string, heartbeat: 'clear' | 'now' = 'clear') => sql`
  owner_instance_id = null, lease_expires_at = null, claimed_by_replica = null,
  status = case when attempt_count > max_retries then 'failed' else 'working' end,
  error = case when attempt_count > max_retries then ${exhaustedError}::text else error end,
  finished_at = case when attempt_count > max_retries then now() else null end,
  last_heartbeat_at = ${heartbeat === 'now' ? sql`now()` : sql`case when attempt_count > max_retries then now() else null end`}`;

/**
 * The lease a (re)newed claim gets: now + max_duration (or the default
 * window), never past total_deadline (DESIGN.md §4.1).
 */
export function leaseExpiry(
  sql: Sql,
  defaultLeaseSeconds: number,
  /** The job's own values, for a row being inserted (default: its columns). */
  of: { maxDuration: number | null; totalDeadline: Date | null } | null = null,
) {
  const maxDuration = of ? sql`${of.maxDuration}::int` : sql`max_duration`;
  const totalDeadline = of ? sql`${of.totalDeadline}::timestamptz` : sql`total_deadline`;
  return sql`least(now() + make_interval(secs => coalesce(${maxDuration}, ${defaultLeaseSeconds}::int)),
                          coalesce(${totalDeadline}, 'infinity'::timestamptz))`;
}

/**
 * How far concurrent requests are coalesced. Fewer statements in flight make
 * bigger statements under load; more lower the wait of a request that arrives
 * while one runs. Measured with `pnpm bench:jobs` (docs/benchmarks.md): one
 * claim statement per capability and two delta statements at a time did best.
 */
export const coalescing = { claimsInFlight: 1, deltasInFlight: 2, maxDeltasPerStatement: 200 };

/**
 * A shared statement failed without committing anything, so its requests can
 * be re-run one by one: PostgreSQL refused it (it was rolled back), or it
 * never left this process (e.g. a value JSON.stringify could not serialise).
 * Not after a lost connection, when the statement may have committed.
 */
export const retryAlone = (err: unknown): boolean =>
  !isDatabaseUnavailable(err) &&
  (err instanceof postgres.PostgresError || !(err as { code?: unknown })?.code);

/** What a refused owner write is judged by: the row as it is now. */
export interface JobFence {
  owner_instance_id: string | null;
  claim_epoch: number;
  status: string;
}

export const jobNotFound = (id: string) => new ApiError('not_found', `job not found: ${id}`);
export const jobTerminal = () => new ApiError('already_terminal', 'job is already in a terminal state');

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Job ids are UUIDs; anything else cannot name a job (and must not reach a uuid column). */
export const isUuid = (id: string): boolean => uuidPattern.test(id);

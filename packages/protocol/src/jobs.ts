import { z } from 'zod';
import { limits } from './limits.ts';

/** MCP Mesh 3.7's five job statuses; the first two are live, the rest terminal. */
export const jobStatuses = ['working', 'input_required', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof jobStatuses)[number];
export const liveStatuses = ['working', 'input_required'] as const satisfies readonly JobStatus[];
export const terminalStatuses = ['completed', 'failed', 'cancelled'] as const satisfies readonly JobStatus[];
export const isTerminal = (s: string): boolean => (terminalStatuses as readonly string[]).includes(s);

/** JSON `null` and absence mean the same on the 3.7 wire. */
const opt = <T extends z.ZodType>(t: T) => t.nullable().optional();
const jsonObject = z.record(z.string(), z.unknown());

/**
 * A job as `GET /jobs/{id}` returns it. Times are integer Unix seconds;
 * nullable fields are present as `null`, never omitted.
 */
export interface Job {
  id: string;
  capability: string;
  owner_instance_id: string | null;
  claim_epoch: number;
  recv_cursor: Record<string, number> | null;
  status: JobStatus;
  progress: number | null;
  progress_message: string | null;
  /** Any JSON value (MCP Mesh 3.7 stores objects only). */
  result: unknown;
  error: string | null;
  submitted_payload: Record<string, unknown>;
  attempt_count: number;
  max_retries: number;
  max_duration: number | null;
  total_deadline: number | null;
  lease_expires_at: number | null;
  last_heartbeat_at: number | null;
  submitted_at: number;
  submitted_by: string;
}

/** `POST /jobs`. `owner_instance_id` non-empty = push mode (pre-owned). */
export const createJobRequest = z.object({
  capability: opt(z.string()),
  submitted_by: opt(z.string()),
  submitted_payload: opt(jsonObject),
  max_retries: opt(z.number().int()),
  max_duration: opt(z.number().int()),
  total_deadline: opt(z.number().int()),
  owner_instance_id: opt(z.string()),
});
export type CreateJobRequest = z.infer<typeof createJobRequest>;
export interface CreateJobResponse {
  id: string;
  status: JobStatus;
  owner_instance_id: string | null;
}

/**
 * `POST /jobs/claim`. `max_jobs` is ours (default 1, the 3.7 behaviour), and
 * so is `wait_ms` (feature `long-poll-claim`, default 0: answer at once): when
 * nothing is claimable the request parks up to that many milliseconds (at most
 * `limits.maxClaimWaitMs`) until work for the capability is queued on any
 * replica, then claims; otherwise it answers the usual empty `claimed`.
 * Registries without the feature (0.1.0, MCP Mesh 3.7) ignore it.
 */
export const claimRequest = z.object({
  capability: opt(z.string()),
  instance_id: opt(z.string()),
  max_jobs: opt(z.number().int()),
  wait_ms: opt(z.number().int()),
});
export const maxClaimBatch = limits.maxClaimBatch;
export interface ClaimedJob {
  id: string;
  submitted_payload: Record<string, unknown>;
  attempt_count: number;
  claim_epoch: number;
  lease_expires_at: number | null;
  max_duration: number | null;
  recv_cursor: Record<string, number> | null;
  /**
   * Ours since 0.2.0 (an extension): the job's absolute deadline in Unix
   * seconds, or null. Absent from 0.1.0 and MCP Mesh 3.7 answers, where a
   * worker reads it with `GET /jobs/{id}`.
   */
  total_deadline?: number | null;
}
export interface ClaimResponse {
  claimed: ClaimedJob[];
}

/** One owner delta of `POST /jobs/batch`. */
export const jobDelta = z.object({
  id: opt(z.string()),
  claim_epoch: opt(z.number().int()),
  status: opt(z.string()),
  progress: opt(z.number()),
  progress_message: opt(z.string()),
  // Any JSON value; `null` and absence both mean "no result".
  result: z.unknown().optional(),
  error: opt(z.string()),
  recv_cursor: opt(z.record(z.string(), z.number().int())),
});
export type JobDelta = z.infer<typeof jobDelta>;
/**
 * `POST /jobs/batch`. `claim` is ours (feature `claim-beside-deltas`, since
 * 0.2.0): beside the deltas, the same instance claims up to `max_jobs`
 * (default 1) queued jobs of `capability`, answered in `claimed`, so a
 * worker whose handler just returned sends its outcome and asks for its next
 * job in one exchange. It never waits (no `wait_ms`). Registries without the
 * feature (0.1.0, MCP Mesh 3.7) ignore it.
 */
export const batchRequest = z.object({
  instance_id: opt(z.string()),
  deltas: opt(z.array(jobDelta)),
  claim: opt(
    z.object({
      capability: opt(z.string()),
      max_jobs: opt(z.number().int()),
    }),
  ),
});

/** Why a delta was refused. Stable strings; the first five are MCP Mesh 3.7's. */
export const deltaRejections = [
  'not_found',
  'claim_superseded',
  'not_owner',
  'already_terminal',
  'invalid_status',
  'epoch_required',
] as const;
export type DeltaRejection = (typeof deltaRejections)[number];
export interface BatchResponse {
  accepted: number;
  rejected: { id: string; reason: DeltaRejection }[];
  /**
   * With `claim` (feature `claim-beside-deltas`): the jobs it claimed, empty
   * when none was queued or the replica drains (then `X-Mesh-Draining: true`).
   */
  claimed?: ClaimedJob[];
}

/** `POST /jobs/{id}/release`. `claim_epoch` is ours: when sent, the release is fenced by it. */
export const releaseRequest = z.object({
  instance_id: opt(z.string()),
  reason: opt(z.string()),
  claim_epoch: opt(z.number().int()),
});
export interface ReleaseResponse {
  status: JobStatus;
  attempt_count: number;
}

export const cancelRequest = z.object({ reason: opt(z.string()) });
export interface CancelResponse {
  status: 'cancelled';
  forwarded_to_instance_id: string | null;
}

export interface ReclaimResponse {
  /** `working` (claimable again) or `failed` when the retry budget was spent. */
  status: JobStatus;
  previous_owner_instance_id: string | null;
  claim_epoch: number;
}

/** `POST /jobs/{id}/events`. */
export const postEventRequest = z.object({
  type: opt(z.string()),
  payload: z.unknown().optional(),
  trace_context: opt(jsonObject),
});
export interface PostEventResponse {
  job_id: string;
  seq: number;
  created_at: number;
}
export interface JobEvent {
  job_id: string;
  seq: number;
  type: string;
  payload: unknown;
  trace_context: Record<string, unknown> | null;
  posted_by: string | null;
  created_at: number;
}
export interface EventsResponse {
  events: JobEvent[];
  next_after: number;
}
/** Event types the registry writes itself. */
export const syntheticEvents = {
  cancelled: 'cancelled',
  stale: 'stale',
  /** Ours: the job's total_deadline passed. */
  deadlineExceeded: 'deadline_exceeded',
} as const;

export interface ListJobsResponse {
  jobs: Job[];
  next_cursor: string | null;
}

/** `POST /jobs/leases` (ours): renew many leases of one instance in one call. */
export const renewLeasesRequest = z.object({
  instance_id: opt(z.string()),
  leases: opt(z.array(z.object({ id: opt(z.string()), claim_epoch: opt(z.number().int()) }))),
});
export const leaseOutcomes = ['renewed', 'superseded', 'cancelled', 'terminal', 'not_found'] as const;
export type LeaseOutcome = (typeof leaseOutcomes)[number];
export interface RenewLeasesResponse {
  results: { id: string; outcome: LeaseOutcome; status: JobStatus | null; lease_expires_at: number | null }[];
}

/**
 * `POST /jobs/signals` (ours, feature `job-signals`): the claims an instance
 * holds. The answer lists those that are no longer its live claim, at once or
 * as soon as one changes within `wait` seconds (at most 60), else none.
 * Level-triggered: what the rows say now, so a missed wake-up loses nothing.
 */
export const jobSignalsRequest = z.object({
  instance_id: opt(z.string()),
  jobs: opt(z.array(z.object({ id: opt(z.string()), claim_epoch: opt(z.number().int()) }))),
  wait: opt(z.number().int()),
});
/**
 * What ended a claim: `cancelled` (the job was cancelled under this claim),
 * `superseded` (owner or epoch moved on: force reclaim, lease expiry, sweep),
 * `terminal` (it completed or failed, e.g. by this owner or its deadline),
 * `not_found`.
 */
export const jobSignalKinds = ['cancelled', 'superseded', 'terminal', 'not_found'] as const;
export type JobSignalKind = (typeof jobSignalKinds)[number];
export interface JobSignal {
  id: string;
  claim_epoch: number;
  signal: JobSignalKind;
  status: JobStatus | null;
}
export interface JobSignalsResponse {
  signals: JobSignal[];
}

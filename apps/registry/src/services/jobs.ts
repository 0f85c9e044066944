/**
 * JobStore, every state change of a job, composed of one module per
 * operation: submission (with idempotency keys) in job-submissions.ts;
 * release, cancel, force reclaim and unanswered claims in job-reclaims.ts;
 * events in job-events.ts; executor reads and lease renewal in job-leases.ts;
 * the claim path in job-claims.ts, owner deltas in job-deltas.ts, reads in
 * job-reads.ts, shared types and SQL fragments in job-common.ts. The sweeps
 * are services/sweeper.ts.
 */
import type { Sql } from '@mesh/db';
import type {
  BatchResponse,
  ClaimedJob,
  Job,
  JobDelta,
  JobEvent,
  JobSignal,
  JobStatus,
  LeaseOutcome,
  ReclaimResponse,
  ReleaseResponse,
} from '@mesh/protocol';
import { ClaimableNotifier, claimableChannel } from './claimable-notifier.ts';
import { JobClaims } from './job-claims.ts';
import type { JobSettings } from './job-common.ts';
import { type FinishedRow, JobDeltas } from './job-deltas.ts';
import { JobEventLog } from './job-events.ts';
import { JobLeases } from './job-leases.ts';
import { JobReads, type ListFilter } from './job-reads.ts';
import { JobReclaims } from './job-reclaims.ts';
import { type Created, type Handoff, JobSubmissions, type NewJob } from './job-submissions.ts';

export {
  isUuid,
  type JobSettings,
  jobChannel,
  jobNotFound,
  jobTerminal,
  requeueOrFail,
  toJob,
} from './job-common.ts';
export type { ListFilter } from './job-reads.ts';
export { canonical, type Handoff, type HandoffTaker, type NewJob } from './job-submissions.ts';

/**
 * Parked long-poll claims wake on any replica through `claimableChannel`
 * (payload `n:capability`): the lease and orphan sweeps notify in their own
 * statement (one notification per capability); submissions, releases and
 * force reclaims through the ClaimableNotifier, after they commit (it says why).
 */
export { claimableChannel };

/**
 * Every state change of a job, each one SQL statement whose WHERE clause holds
 * all of its preconditions (DESIGN.md §4.2): zero rows changed means a
 * precondition failed, and only then does a read decide which error to give.
 * Times come from the database clock (§4.1).
 */
export class JobStore {
  /** Requests and the shared statements that served them (the coalescing ratio). */
  readonly statementStats = {
    claim: { requests: 0, statements: 0 },
    delta: { requests: 0, statements: 0 },
  };
  /** Delta statements running and delta requests waiting for one (tests, debugging). */
  get deltaQueue(): { inFlight: number; waiting: number } {
    return this.deltas.state;
  }
  /** Wakes parked long-poll claims, fleet-wide, once submissions committed. */
  readonly notifier: ClaimableNotifier;

  /**
   * Told of every job an owner delta finished (completed or failed), with its
   * capability and seconds since submission (database clock): the duration
   * histogram. Set by the server; unset in tests that need no metrics.
   */
  onFinished?: (capability: string, outcome: string, seconds: number) => void;
  /** Parked long-poll claims a submission may hand its job to; set by the server when long-poll is on. */
  handoff?: Handoff;
  private readonly submissions: JobSubmissions;
  private readonly reclaims: JobReclaims;
  private readonly events: JobEventLog;
  private readonly leases: JobLeases;
  private readonly claims: JobClaims;
  private readonly deltas: JobDeltas;
  private readonly reads: JobReads;

  /**
   * `sql` serves everything; `shared`, when given, runs the shared claim and
   * delta statements on connections of their own (server.ts says why).
   */
  constructor(sql: Sql, settings: JobSettings, shared: Sql = sql) {
    this.notifier = new ClaimableNotifier(sql);
    this.claims = new JobClaims(shared, settings, this.statementStats.claim);
    this.deltas = new JobDeltas(sql, shared, settings, this.statementStats.delta, (rows) =>
      this.finished(rows),
    );
    this.reads = new JobReads(sql, settings);
    this.reclaims = new JobReclaims(sql, settings, this.notifier);
    this.submissions = new JobSubmissions(sql, settings, this.notifier, this.reclaims, () => this.handoff);
    this.events = new JobEventLog(sql);
    this.leases = new JobLeases(sql, settings, this.reads);
  }

  /**
   * POST /jobs. With an idempotency key, one job per key fleet-wide;
   * `replayed` says the key named a job created by an earlier submission
   * (job-submissions.ts).
   */
  create(job: NewJob): Promise<Created & { replayed: boolean }> {
    return this.submissions.create(job);
  }

  /**
   * Undoes claims whose answer was never sent: queued again with their
   * attempt given back, fenced by owner and epoch (job-reclaims.ts).
   */
  unclaimUnanswered(
    capability: string,
    instanceId: string,
    claimed: readonly { id: string; claim_epoch: number }[],
  ): Promise<void> {
    return this.reclaims.unclaimUnanswered(capability, instanceId, claimed);
  }

  /** Live claims (reference §5), fleet-wide and handed out by this replica (job-reads.ts). */
  liveClaims(): Promise<{ total: number; mine: number }> {
    return this.reads.liveClaims();
  }

  get(id: string): Promise<Job> {
    return this.reads.get(id);
  }

  /** GET /jobs: newest first, keyset pagination on (submitted_at, id) (job-reads.ts). */
  list(
    f: ListFilter,
  ): Promise<{ rows: Job[]; last: { micros: bigint; id: string } | undefined; more: boolean }> {
    return this.reads.list(f);
  }

  /** Claims up to `max` queued jobs of a capability for `instanceId`, oldest first (job-claims.ts). */
  claim(capability: string, instanceId: string, max: number): Promise<ClaimedJob[]> {
    return this.claims.claim(capability, instanceId, max);
  }

  /** Applies owner deltas; each is independent, 3.7 semantics (job-deltas.ts). */
  applyDeltas(instanceId: string, deltas: JobDelta[]): Promise<BatchResponse> {
    return this.deltas.applyDeltas(instanceId, deltas);
  }

  private finished(rows: readonly FinishedRow[]): void {
    if (!this.onFinished) return;
    for (const r of rows) {
      if (r.status === 'completed' || r.status === 'failed') this.onFinished(r.capability, r.status, r.age);
    }
  }

  /**
   * The owner gives the job back: queued again within budget, failed past it;
   * fenced by claim_epoch when one is given (job-reclaims.ts).
   */
  release(id: string, instanceId: string, reason: string, epoch: number | null): Promise<ReleaseResponse> {
    return this.reclaims.release(id, instanceId, reason, epoch);
  }

  /** Cancels a live job with its synthetic `cancelled` event, in one statement (job-reclaims.ts). */
  cancel(id: string, reason: string): Promise<{ previousOwner: string | null }> {
    return this.reclaims.cancel(id, reason);
  }

  /** Operator's force reclaim: evicts the owner of a live job, retry budget applied (job-reclaims.ts). */
  reclaim(id: string): Promise<ReclaimResponse> {
    return this.reclaims.reclaim(id);
  }

  /** Appends an event to a live job's log, within its bounds (job-events.ts). */
  postEvent(
    id: string,
    type: string,
    payload: unknown,
    traceContext: Record<string, unknown> | null,
    bytes: number,
  ): Promise<{ seq: number; created_at: number }> {
    return this.events.postEvent(id, type, payload, traceContext, bytes);
  }

  /** Up to `limit` events after `after`, within limits.maxResponseBytes (job-reads.ts). */
  readEvents(id: string, after: number, types: string[], limit: number): Promise<JobEvent[]> {
    return this.reads.readEvents(id, after, types, limit);
  }

  /** `live`, `terminal` or `missing`: what an observer read needs to know. */
  jobState(id: string): Promise<'live' | 'terminal' | 'missing'> {
    return this.reads.jobState(id);
  }

  /**
   * Executor read (DESIGN.md §4.3): fenced by (owner, epoch) and renews the
   * lease, never shortening it (job-leases.ts).
   */
  touchExecutor(
    id: string,
    instanceId: string,
    epoch: number,
  ): Promise<{ state: 'renewed' | 'terminal' | 'superseded' | 'missing'; windowSeconds: number }> {
    return this.leases.touchExecutor(id, instanceId, epoch);
  }

  /** Renews many leases of one instance in one fenced statement (job-leases.ts). */
  renewLeases(
    instanceId: string,
    leases: { id: string; epoch: number }[],
  ): Promise<
    { id: string; outcome: LeaseOutcome; status: JobStatus | null; lease_expires_at: number | null }[]
  > {
    return this.leases.renewLeases(instanceId, leases);
  }

  /** Which of an instance's claims are no longer its live claim: `POST /jobs/signals` (job-reads.ts). */
  claimSignals(instanceId: string, claims: { id: string; epoch: number }[]): Promise<JobSignal[]> {
    return this.reads.claimSignals(instanceId, claims);
  }
}

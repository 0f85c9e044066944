/**
 * JobStore, every state change of a job: submission (with idempotency keys),
 * release, cancel, force reclaim, events, executor reads and lease renewal
 * here; the claim path in job-claims.ts, owner deltas in job-deltas.ts, reads
 * in job-reads.ts, shared types and SQL fragments in job-common.ts.
 */
import { createHash } from 'node:crypto';
import type { Sql } from '@mesh/db';
import {
  type BatchResponse,
  type ClaimedJob,
  isTerminal,
  type Job,
  type JobDelta,
  type JobEvent,
  type JobSignal,
  type JobStatus,
  type LeaseOutcome,
  limits,
  type ReclaimResponse,
  type ReleaseResponse,
} from '@mesh/protocol';
import { ApiError } from '../errors.ts';
import { ClaimableNotifier, claimableChannel } from './claimable-notifier.ts';
import { JobClaims } from './job-claims.ts';
import {
  type ClaimedRow,
  isUuid,
  type JobFence,
  type JobSettings,
  jobChannel,
  jobNotFound,
  jobTerminal,
  leaseExpiry,
  requeueOrFail,
  seconds,
  toClaimedJob,
} from './job-common.ts';
import { type FinishedRow, JobDeltas } from './job-deltas.ts';
import { JobReads, type ListFilter } from './job-reads.ts';

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

/**
 * Parked long-poll claims wake on any replica through `claimableChannel`
 * (payload `n:capability`): the lease and orphan sweeps notify in their own
 * statement (one notification per capability); submissions, releases and
 * force reclaims through the ClaimableNotifier, after they commit (it says why).
 */
export { claimableChannel };

export interface NewJob {
  capability: string;
  submittedBy: string;
  payload: Record<string, unknown>;
  maxRetries: number;
  maxDuration: number | null;
  totalDeadline: number | null;
  owner: string | null;
  /** The submission's `Idempotency-Key`, if it sent one. */
  idempotencyKey?: string | null;
}

type Created = { id: string; status: JobStatus; owner_instance_id: string | null };

/**
 * A long-poll claim parked on this replica that may take a job submitted here
 * at once (services/claim-waiters.ts): the submission is then inserted
 * already claimed, one statement and one commit for both.
 */
export interface Handoff {
  /** Reserves a parked claim of the capability; undefined when none may take a new job. */
  reserve(capability: string): HandoffTaker | undefined;
}

export interface HandoffTaker {
  readonly instanceId: string;
  /** Runs the claiming insert through the drain gate; null (not run) when draining. */
  gated<T>(insert: () => Promise<T>): Promise<T | null>;
  /** Answers the parked claim with the job; false when it stopped waiting meanwhile. */
  deliver(job: ClaimedJob): boolean;
  /** The job was not inserted claimed: the parked claim claims again (a notification may have skipped it), then waits on. */
  cancel(): void;
}

/** Canonical JSON (object keys sorted): equal values, equal text, whatever the key order sent. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * What makes two submissions "the same request" under one key: every field of
 * the job as stored (after defaults), not the bytes sent, so a retry that
 * orders keys differently or spells out a default is still the same request.
 */
function fingerprint(job: NewJob): string {
  const { idempotencyKey: _, ...fields } = job;
  return createHash('sha256').update(canonical(fields)).digest('base64url');
}

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
   * `sql` serves everything; `shared`, when given, runs the shared claim and
   * delta statements on connections of their own (server.ts says why).
   */
  /**
   * Told of every job an owner delta finished (completed or failed), with its
   * capability and seconds since submission (database clock): the duration
   * histogram. Set by the server; unset in tests that need no metrics.
   */
  onFinished?: (capability: string, outcome: string, seconds: number) => void;
  /** Parked long-poll claims a submission may hand its job to; set by the server when long-poll is on. */
  handoff?: Handoff;
  /** Submissions running their insert now (inline notification only when alone). */
  private submitting = 0;
  private readonly claims: JobClaims;
  private readonly deltas: JobDeltas;
  private readonly reads: JobReads;

  constructor(
    private readonly sql: Sql,
    private readonly settings: JobSettings,
    shared: Sql = sql,
  ) {
    this.notifier = new ClaimableNotifier(sql);
    this.claims = new JobClaims(shared, settings, this.statementStats.claim);
    this.deltas = new JobDeltas(sql, shared, settings, this.statementStats.delta, (rows) =>
      this.finished(rows),
    );
    this.reads = new JobReads(sql, settings);
  }

  /** The lease a (re)newed claim gets (job-common.ts). */
  private lease() {
    return leaseExpiry(this.sql, this.settings.defaultLeaseSeconds);
  }

  /**
   * POST /jobs. With an idempotency key, one job per key fleet-wide (below);
   * `replayed` says the key named a job created by an earlier submission.
   */
  async create(job: NewJob): Promise<Created & { replayed: boolean }> {
    if (!job.idempotencyKey) return { ...((await this.insert(job, null)) as Created), replayed: false };
    const key = job.idempotencyKey;
    const digest = fingerprint(job);
    // The retention sweep may delete the keyed job between the insert that
    // found it and the read: the key is then free, and the next pass creates it.
    for (let pass = 0; pass < 3; pass++) {
      const created = await this.insert(job, { key, digest });
      if (created) return { ...created, replayed: false };
      const [found] = await this.sql<{ id: string; fingerprint: string | null }[]>`
        select id, idempotency_fingerprint as fingerprint from jobs where idempotency_key = ${key}`;
      if (!found) continue;
      if (found.fingerprint !== digest) {
        throw new ApiError(
          'idempotency_key_reused',
          `Idempotency-Key already used by job ${found.id} for a different request`,
        );
      }
      // The first answer, replayed: the same request created it, as working,
      // pushed to the owner it named (reads show where the job is now).
      return { id: found.id, status: 'working', owner_instance_id: job.owner, replayed: true };
    }
    throw new ApiError('unavailable', 'Idempotency-Key: the keyed job was deleted while it was read; retry');
  }

  private async insert(
    job: NewJob,
    idempotency: { key: string; digest: string } | null,
  ): Promise<Created | undefined> {
    const id = crypto.randomUUID();
    const taker = job.owner === null ? this.handoff?.reserve(job.capability) : undefined;
    if (taker) {
      const handed = await this.insertClaimed(id, job, idempotency, taker);
      if (handed !== 'draining') return handed;
    }
    const insert = this.insertStatement<Created>(id, job, idempotency, null);
    // A queued job wakes parked claims of its capability on every replica (a
    // pushed one has its owner). A submission alone on this replica (none
    // other running, no notification waiting to be sent) notifies in its own
    // transaction: other replicas hear of it one round trip sooner. Concurrent
    // ones go through the notifier, so that their commits still share WAL
    // flushes (claimable-notifier.ts says why).
    const inline = job.owner === null && this.submitting === 0 && this.notifier.idle;
    this.submitting += 1;
    let row: Created | undefined;
    try {
      [row] = inline
        ? await this.sql<Created[]>`
            with inserted as (${insert})
            select id, status, owner_instance_id, pg_notify(${claimableChannel}, '1:' || ${job.capability}::text)
            from inserted`
        : await insert;
    } finally {
      this.submitting -= 1;
    }
    if (row && row.owner_instance_id === null && !inline) this.notifier.queued(job.capability);
    // Not the row itself: the inline form adds the pg_notify column.
    return row ? { id: row.id, status: row.status, owner_instance_id: row.owner_instance_id } : undefined;
  }

  /**
   * The INSERT of a submission: queued, pushed to its `owner` (running from
   * the start: it counts as the first attempt, so it gets exactly max_retries
   * retries like a claimed one; MCP Mesh gives push mode one more, reference
   * §11 item 15), or, `claimedBy`, handed to a parked claim: left as the claim
   * statement leaves a job (first attempt, epoch 1, the claim's lease from the
   * database clock, claimed by this replica).
   */
  private insertStatement<Row extends object>(
    id: string,
    job: NewJob,
    idempotency: { key: string; digest: string } | null,
    claimedBy: string | null,
  ) {
    const totalDeadline = job.totalDeadline === null ? null : new Date(job.totalDeadline * 1000);
    const owner = claimedBy ?? job.owner;
    const lease = claimedBy
      ? leaseExpiry(this.sql, this.settings.defaultLeaseSeconds, {
          maxDuration: job.maxDuration,
          totalDeadline,
        })
      : null;
    return this.sql<Row[]>`
      insert into jobs (id, capability, submitted_by, submitted_payload, max_retries, max_duration, total_deadline,
                        owner_instance_id, attempt_count, idempotency_key, idempotency_fingerprint,
                        claim_epoch, lease_expires_at, last_heartbeat_at, claimed_by_replica)
      values (${id}, ${job.capability}, ${job.submittedBy}, ${this.sql.json(job.payload as never)}, ${job.maxRetries},
              ${job.maxDuration}, ${totalDeadline}, ${owner}, ${owner ? 1 : 0}, ${idempotency?.key ?? null},
              ${idempotency?.digest ?? null}, ${claimedBy ? 1 : 0}, ${lease ?? null},
              ${claimedBy ? this.sql`now()` : null}, ${claimedBy ? this.settings.replicaId : null})
      -- One job per key across replicas (DESIGN.md §4.2, one conditional
      -- statement): jobs_idempotency_key_idx decides. A concurrent insert of the
      -- same key waits for the first to commit, then inserts nothing; no row
      -- back means the key names a job already, and a read finds it (and a
      -- handed-off insert claims nothing).
      on conflict (idempotency_key) where idempotency_key is not null do nothing
      returning ${
        claimedBy
          ? this
              .sql`id, submitted_payload, attempt_count, claim_epoch, lease_expires_at as lease, max_duration,
                     recv_cursor, total_deadline as deadline`
          : this.sql`id, status, owner_instance_id`
      }`;
  }

  /**
   * A submission handed to a long-poll claim parked on this replica (pickup
   * without a notification and a second commit): the job is inserted already
   * claimed by it (insertStatement), through the drain gate like any claim.
   * The submitter is answered as for a queued job (`working`, no owner: it
   * did not push). If the parked claim stopped waiting while the insert ran
   * (client gone, timeout, drain), the claim is undone in a fenced statement
   * that gives the attempt back, and the job is queued as usual.
   * `'draining'`: nothing was inserted, the caller queues the job.
   */
  private async insertClaimed(
    id: string,
    job: NewJob,
    idempotency: { key: string; digest: string } | null,
    taker: HandoffTaker,
  ): Promise<Created | undefined | 'draining'> {
    let rows: ClaimedRow[] | null;
    try {
      rows = await taker.gated(() =>
        this.insertStatement<ClaimedRow>(id, job, idempotency, taker.instanceId),
      );
    } catch (err) {
      taker.cancel();
      throw err;
    }
    if (rows === null) {
      taker.cancel();
      return 'draining';
    }
    const [r] = rows;
    if (!r) {
      taker.cancel();
      return undefined;
    }
    const claimed = toClaimedJob(r);
    if (!taker.deliver(claimed)) await this.unclaimUnanswered(job.capability, taker.instanceId, [claimed]);
    return { id, status: 'working', owner_instance_id: null };
  }

  /**
   * Undoes claims whose answer was never sent (a handoff whose parked claim
   * had left, a claim whose client disconnected before its answer, a claim
   * beside deltas whose deltas failed): queued again
   * with their attempt given back (none was made), fenced by the owner and
   * the epoch each was claimed at (DESIGN.md §4.2); the epochs stay spent, so
   * epochs only grow. If this fails, the lease sweep requeues them when their
   * leases expire (an attempt is counted then).
   */
  async unclaimUnanswered(
    capability: string,
    instanceId: string,
    claimed: readonly { id: string; claim_epoch: number }[],
  ): Promise<void> {
    if (claimed.length === 0) return;
    try {
      const rows = await this.sql<{ id: string }[]>`
        update jobs set owner_instance_id = null, attempt_count = attempt_count - 1, lease_expires_at = null,
                        claimed_by_replica = null, last_heartbeat_at = null
        from unnest(${claimed.map((c) => c.id)}::uuid[], ${claimed.map((c) => c.claim_epoch)}::bigint[]) as g(id, epoch)
        where jobs.id = g.id and jobs.claim_epoch = g.epoch and owner_instance_id = ${instanceId}
          and status = 'working'
        returning jobs.id`;
      if (rows.length > 0) this.notifier.queued(capability, rows.length);
    } catch {
      // The lease sweep requeues them.
    }
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
   * The owner gives the job back (DESIGN.md §4.5): within budget it is queued
   * again, as `working` even if it was `input_required` (§11 item 9); over
   * budget it fails. Fenced by claim_epoch when one is given (§11 item 2).
   */
  async release(
    id: string,
    instanceId: string,
    reason: string,
    epoch: number | null,
  ): Promise<ReleaseResponse> {
    if (epoch === null && this.settings.requireClaimEpoch) {
      throw new ApiError(
        'epoch_required',
        'claim_epoch is required: this registry refuses epoch-less writes',
      );
    }
    if (!isUuid(id)) throw jobNotFound(id);
    const why = reason.trim() || 'max retries exceeded';
    const [row] = await this.sql<(ReleaseResponse & { capability: string })[]>`
      update jobs set ${requeueOrFail(this.sql, `exhausted (release): ${why}`, 'now')}
      where id = ${id} and owner_instance_id = ${instanceId} and status in ('working', 'input_required')
        and (${epoch}::bigint is null or claim_epoch = ${epoch}::bigint)
      returning status, attempt_count, capability`;
    if (row) {
      if (row.status === 'working') this.notifier.queued(row.capability);
      return { status: row.status, attempt_count: row.attempt_count };
    }
    const [cur] = await this.sql<{ owner_instance_id: string | null; claim_epoch: number; status: string }[]>`
      select owner_instance_id, claim_epoch, status from jobs where id = ${id}`;
    if (!cur) throw jobNotFound(id);
    if (isTerminal(cur.status)) throw jobTerminal();
    if (epoch !== null) throw new ApiError('claim_superseded');
    throw new ApiError('not_owner', 'caller is not the current owner of this job');
  }

  /**
   * Cancels a live job and writes the synthetic `cancelled` event in the same
   * statement (DESIGN.md §4.2); never touches a terminal job (§11 item 7).
   * The owner stays recorded, so its later deltas report `already_terminal`.
   */
  async cancel(id: string, reason: string): Promise<{ previousOwner: string | null }> {
    if (!isUuid(id)) throw jobNotFound(id);
    const trimmed = reason.trim();
    const [row] = await this.sql<{ owner_instance_id: string | null }[]>`
      with cancelled as (
        update jobs set status = 'cancelled', last_heartbeat_at = now(), finished_at = now(),
                        error = case when ${trimmed} <> '' then ${`cancelled: ${trimmed}`} else error end,
                        event_seq = event_seq + 1
        where id = ${id} and status in ('working', 'input_required')
        returning id, owner_instance_id, event_seq
      ), event as (
        insert into job_events (job_id, seq, type, payload)
        select id, event_seq, 'cancelled', ${this.sql.json({ reason: trimmed })} from cancelled
      )
      select owner_instance_id, pg_notify(${jobChannel}, id::text) from cancelled`;
    if (row) return { previousOwner: row.owner_instance_id };
    const [cur] = await this.sql`select status from jobs where id = ${id}`;
    if (!cur) throw jobNotFound(id);
    throw jobTerminal();
  }

  /**
   * Operator's force reclaim: evicts the owner of a live job. The retry budget
   * applies as on every other path back to the queue (DESIGN.md §4.5): at the
   * last attempt the job fails instead of becoming an unclaimable row (§11
   * item 1). claim_epoch is unchanged; the next claim mints the next one.
   */
  async reclaim(id: string): Promise<ReclaimResponse> {
    if (!isUuid(id)) throw jobNotFound(id);
    const [row] = await this.sql<(ReclaimResponse & { capability: string })[]>`
      update jobs j set ${requeueOrFail(this.sql, 'exhausted (reclaim): max retries exceeded')}
      from (select id, owner_instance_id from jobs where id = ${id} for update) as before
      where j.id = before.id and j.status in ('working', 'input_required')
      returning j.status, before.owner_instance_id as previous_owner_instance_id, j.claim_epoch,
                j.capability, pg_notify(${jobChannel}, j.id::text)`;
    if (row) {
      if (row.status === 'working') this.notifier.queued(row.capability);
      return {
        status: row.status,
        previous_owner_instance_id: row.previous_owner_instance_id,
        claim_epoch: row.claim_epoch,
      };
    }
    const [cur] = await this.sql`select status from jobs where id = ${id}`;
    if (!cur) throw jobNotFound(id);
    throw jobTerminal();
  }

  /**
   * Appends an event to a live job's log: the job row hands out the next seq in
   * the same statement (dense, no retry loop), and every replica's long-polls
   * are woken. `bytes` is the event's size as the route measured it (type,
   * payload and trace context as JSON), counted against the job's byte bound.
   */
  async postEvent(
    id: string,
    type: string,
    payload: unknown,
    traceContext: Record<string, unknown> | null,
    bytes: number,
  ): Promise<{ seq: number; created_at: number }> {
    if (!isUuid(id)) throw jobNotFound(id);
    const [row] = await this.sql<{ seq: number; created_at: Date }[]>`
      with job as (
        -- One conditional statement (DESIGN.md §4.2): the limits are more preconditions.
        -- Bounded log (issue 18): a live job takes events up to limits.maxEventsPerJob
        -- and limits.maxEventBytesPerJob; the registry's own terminal events (cancel,
        -- stale, deadline) come on top.
        update jobs set event_seq = event_seq + 1, event_bytes = event_bytes + ${bytes}
        where id = ${id} and status in ('working', 'input_required') and event_seq < ${limits.maxEventsPerJob}
          and event_bytes + ${bytes} <= ${limits.maxEventBytesPerJob}
        returning id, event_seq
      ), event as (
        insert into job_events (job_id, seq, type, payload, trace_context)
        select id, event_seq, ${type}, ${payload === undefined || payload === null ? null : this.sql.json(payload as never)},
               ${traceContext ? this.sql.json(traceContext as never) : null}
        from job
        returning job_id, seq, created_at
      )
      select seq, created_at, pg_notify(${jobChannel}, job_id::text) from event`;
    if (row) return { seq: row.seq, created_at: seconds(row.created_at) as number };
    const [cur] = await this.sql<{ status: string; event_seq: number; event_bytes: number }[]>`
      select status, event_seq, event_bytes from jobs where id = ${id}`;
    if (!cur) throw jobNotFound(id);
    if (isTerminal(cur.status)) throw jobTerminal();
    if (cur.event_seq >= limits.maxEventsPerJob) {
      throw new ApiError('conflict', `job has reached the limit of ${limits.maxEventsPerJob} events`);
    }
    throw new ApiError(
      'conflict',
      `job's events would exceed the limit of ${limits.maxEventBytesPerJob} bytes per job ` +
        `(${cur.event_bytes} posted, this event ${bytes})`,
    );
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
   * lease, never shortening it. `terminal` reads are served unfenced (3.7).
   */
  async touchExecutor(
    id: string,
    instanceId: string,
    epoch: number,
  ): Promise<{ state: 'renewed' | 'terminal' | 'superseded' | 'missing'; windowSeconds: number }> {
    const [renewed] = await this.sql<{ window: number }[]>`
      update jobs set lease_expires_at = greatest(lease_expires_at, ${this.lease()}), last_heartbeat_at = now()
      where id = ${id} and owner_instance_id = ${instanceId} and claim_epoch = ${epoch}
        and status in ('working', 'input_required')
      returning coalesce(max_duration, ${this.settings.defaultLeaseSeconds}::int) as window`;
    if (renewed) return { state: 'renewed', windowSeconds: renewed.window };
    const state = await this.jobState(id);
    return { state: state === 'live' ? 'superseded' : state, windowSeconds: 0 };
  }

  /**
   * Renews many leases of one instance (our extension): one fenced statement,
   * the same fence as every owner write (DESIGN.md §4.3). The pairs it did not
   * renew are classified by a follow-up read (§4.2), never by the statement's
   * own snapshot: a renewal that waited on the row lock of a completion or a
   * cancel re-checks the row as that write committed it (READ COMMITTED), while
   * its snapshot still shows the job live and owned, which read as
   * `superseded` (issue 19).
   */
  async renewLeases(
    instanceId: string,
    leases: { id: string; epoch: number }[],
  ): Promise<
    { id: string; outcome: LeaseOutcome; status: JobStatus | null; lease_expires_at: number | null }[]
  > {
    const valid = leases.filter((l) => isUuid(l.id));
    // The one statement of the hot path: a row changes only for its current owner, at the
    // epoch asked for, while it is live (DESIGN.md §4.2, §4.3); times from now() (§4.1).
    const renewed = valid.length
      ? await this.sql<{ id: string; epoch: number; status: JobStatus; lease: Date | null }[]>`
          update jobs j set lease_expires_at = greatest(j.lease_expires_at, ${this.lease()}), last_heartbeat_at = now()
          from unnest(${valid.map((l) => l.id)}::uuid[], ${valid.map((l) => l.epoch)}::bigint[]) as req(id, epoch)
          where j.id = req.id and j.owner_instance_id = ${instanceId} and j.claim_epoch = req.epoch
            and j.status in ('working', 'input_required')
          returning j.id, j.claim_epoch as epoch, j.status, j.lease_expires_at as lease`
      : [];
    const renewedKey = (id: string, epoch: number) => `${id}/${epoch}`;
    const done = new Map(renewed.map((r) => [renewedKey(r.id, r.epoch), r]));
    const refusedIds = [
      ...new Set(valid.filter((l) => !done.has(renewedKey(l.id, l.epoch))).map((l) => l.id)),
    ];
    // Only when something was not renewed: the rows as they are now, after the statement.
    const current = new Map(
      refusedIds.length
        ? (
            await this.sql<(JobFence & { id: string; status: JobStatus })[]>`
              select id, owner_instance_id, claim_epoch, status from jobs where id = any(${refusedIds}::uuid[])`
          ).map((r) => [r.id, r])
        : [],
    );
    return leases.map((l) => {
      const ok = done.get(renewedKey(l.id, l.epoch));
      if (ok) return { id: l.id, outcome: 'renewed', status: ok.status, lease_expires_at: seconds(ok.lease) };
      const r = current.get(l.id);
      if (!r) return { id: l.id, outcome: 'not_found', status: null, lease_expires_at: null };
      // As for deltas (3.7): once owner or epoch moved on, the caller was superseded,
      // whatever became of the job since; `cancelled`/`terminal` only for its own claim.
      // Its own claim still live yet not renewed means the row changed between the
      // statement and this read: answer conservatively, as `refusal` does.
      const mine = r.owner_instance_id === instanceId && r.claim_epoch === l.epoch;
      const outcome: LeaseOutcome = !mine
        ? 'superseded'
        : r.status === 'cancelled'
          ? 'cancelled'
          : isTerminal(r.status)
            ? 'terminal'
            : 'superseded';
      return { id: l.id, outcome, status: r.status, lease_expires_at: null };
    });
  }

  /** Which of an instance's claims are no longer its live claim: `POST /jobs/signals` (job-reads.ts). */
  claimSignals(instanceId: string, claims: { id: string; epoch: number }[]): Promise<JobSignal[]> {
    return this.reads.claimSignals(instanceId, claims);
  }
}

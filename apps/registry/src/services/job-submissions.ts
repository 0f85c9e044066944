/**
 * The submission path of JobStore (POST /jobs): one job per idempotency key
 * fleet-wide, the INSERT of a queued, pushed or handed-off job, and the
 * handoff to a long-poll claim parked on this replica.
 */
import { createHash } from 'node:crypto';
import type { Sql } from '@mesh/db';
import type { ClaimedJob, JobStatus } from '@mesh/protocol';
import { ApiError } from '../errors.ts';
import { type ClaimableNotifier, claimableChannel } from './claimable-notifier.ts';
import { type ClaimedRow, type JobSettings, leaseExpiry, toClaimedJob } from './job-common.ts';
import type { JobReclaims } from './job-reclaims.ts';

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

export type Created = { id: string; status: JobStatus; owner_instance_id: string | null };

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
 * Submissions for JobStore.create, on its request pool. `handoff` reads
 * JobStore.handoff (set by the server when long-poll is on); `reclaims` undoes
 * a handed-off claim whose parked claim had left.
 */
export class JobSubmissions {
  /** Submissions running their insert now (inline notification only when alone). */
  private submitting = 0;

  constructor(
    private readonly sql: Sql,
    private readonly settings: JobSettings,
    private readonly notifier: ClaimableNotifier,
    private readonly reclaims: JobReclaims,
    private readonly handoff: () => Handoff | undefined,
  ) {}

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
    const taker = job.owner === null ? this.handoff()?.reserve(job.capability) : undefined;
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
    if (!taker.deliver(claimed))
      await this.reclaims.unclaimUnanswered(job.capability, taker.instanceId, [claimed]);
    return { id, status: 'working', owner_instance_id: null };
  }
}

/**
 * The paths of JobStore that take a live job from its owner: the owner's
 * release, a cancel, the operator's force reclaim, and undoing a claim whose
 * answer was never sent. Each is one conditional statement (DESIGN.md §4.2);
 * only when it changed nothing does a read decide which error to give.
 */
import type { Sql } from '@mesh/db';
import { isTerminal, type ReclaimResponse, type ReleaseResponse } from '@mesh/protocol';
import { ApiError } from '../errors.ts';
import type { ClaimableNotifier } from './claimable-notifier.ts';
import {
  isUuid,
  type JobSettings,
  jobChannel,
  jobNotFound,
  jobTerminal,
  requeueOrFail,
} from './job-common.ts';

/** Releases, cancels and reclaims for JobStore, on its request pool; requeued jobs wake parked claims through `notifier`. */
export class JobReclaims {
  constructor(
    private readonly sql: Sql,
    private readonly settings: JobSettings,
    private readonly notifier: ClaimableNotifier,
  ) {}

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
}

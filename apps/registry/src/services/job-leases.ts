/**
 * The lease renewals of JobStore: the fenced executor read that renews its
 * job's lease, and the batch renewal of an instance's leases. Each is one
 * fenced statement (DESIGN.md §4.2, §4.3); what it did not renew is
 * classified by a read of the row as it is now.
 */
import type { Sql } from '@mesh/db';
import { isTerminal, type JobStatus, type LeaseOutcome } from '@mesh/protocol';
import { isUuid, type JobFence, type JobSettings, leaseExpiry, seconds } from './job-common.ts';
import type { JobReads } from './job-reads.ts';

/** Lease renewals for JobStore, on its request pool; `reads` classifies a refused executor read. */
export class JobLeases {
  constructor(
    private readonly sql: Sql,
    private readonly settings: JobSettings,
    private readonly reads: JobReads,
  ) {}

  /** The lease a (re)newed claim gets (job-common.ts). */
  private lease() {
    return leaseExpiry(this.sql, this.settings.defaultLeaseSeconds);
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
    const state = await this.reads.jobState(id);
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
}

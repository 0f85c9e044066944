/**
 * The claim path of JobStore: concurrent claims of one capability coalesced
 * into one shared claim statement (DESIGN.md §4.4), and its one-by-one retry
 * when that statement fails without committing.
 */
import type { Sql } from '@mesh/db';
import { type ClaimedJob, limits } from '@mesh/protocol';
import { Coalescer } from './coalescer.ts';
import {
  type ClaimedRow,
  coalescing,
  type JobSettings,
  leaseExpiry,
  retryAlone,
  toClaimedJob,
} from './job-common.ts';

interface ClaimAsk {
  instanceId: string;
  max: number;
}
type ClaimOutcome = { claimed: ClaimedJob[] } | { error: unknown };

/** Claims for JobStore.claim; `stats` is JobStore.statementStats.claim. */
export class JobClaims {
  private readonly claimers = new Map<string, Coalescer<ClaimAsk, ClaimOutcome>>();

  constructor(
    private readonly shared: Sql,
    private readonly settings: JobSettings,
    private readonly stats: { requests: number; statements: number },
  ) {}

  /**
   * Claims up to `max` queued jobs of a capability for `instanceId`, oldest
   * first. Concurrent claims of one capability share a statement
   * (`claimStatement`): under load the database plans and commits once for
   * many claimers; alone, a claim runs at once.
   */
  async claim(capability: string, instanceId: string, max: number): Promise<ClaimedJob[]> {
    let claimer = this.claimers.get(capability);
    if (!claimer) {
      claimer = new Coalescer<ClaimAsk, ClaimOutcome>((asks) => this.claimShared(capability, asks), {
        maxInFlight: coalescing.claimsInFlight,
        maxWeight: limits.maxClaimBatch,
        weight: (ask) => ask.max,
      });
      this.claimers.set(capability, claimer);
    }
    try {
      const outcome = await claimer.submit({ instanceId, max: Math.trunc(max) });
      if ('error' in outcome) throw outcome.error;
      return outcome.claimed;
    } finally {
      // Capabilities are the callers' strings: keep no state for idle ones.
      const { inFlight, waiting } = claimer.state;
      if (inFlight === 0 && waiting === 0 && this.claimers.get(capability) === claimer)
        this.claimers.delete(capability);
    }
  }

  /**
   * Runs the shared claim statement; if it fails without committing, each ask
   * runs alone, in arrival order (still one statement at a time for the
   * capability), so the failure answers only the request that caused it, as
   * for deltas (issue 18).
   */
  private async claimShared(capability: string, asks: ClaimAsk[]): Promise<ClaimOutcome[]> {
    try {
      return (await this.claimStatement(capability, asks)).map((claimed) => ({ claimed }));
    } catch (err) {
      if (asks.length === 1 || !retryAlone(err)) throw err;
      const out: ClaimOutcome[] = [];
      for (const ask of asks) {
        out.push(
          await this.claimStatement(capability, [ask]).then(
            ([claimed]) => ({ claimed: claimed ?? [] }),
            (error: unknown) => ({ error }),
          ),
        );
      }
      return out;
    }
  }

  /**
   * One claim statement for several claimers of a capability (DESIGN.md §4.4):
   * over the partial index of claimable rows, oldest first, skipping rows other
   * claimers hold locked, so concurrent claimers never wait on or collide with
   * one another, and never answer "no work" while unlocked claimable rows
   * remain. The picked rows are dealt out in FIFO order: the first ask gets the
   * oldest. Each claim bumps attempt_count and claim_epoch (the fencing token)
   * and sets the lease from the database clock. Queued rows whose retry budget
   * is spent are not claimable (not in the index) and are retired here, so
   * they never block the rows behind them (§11 item 1).
   */
  private async claimStatement(capability: string, asks: ClaimAsk[]): Promise<ClaimedJob[][]> {
    // One slot per job asked for; slot n goes to the nth oldest picked row.
    const slotOwners = asks.flatMap((ask) => Array<string>(ask.max).fill(ask.instanceId));
    const slotAsk = asks.flatMap((ask, i) => Array<number>(ask.max).fill(i));
    this.stats.statements += 1;
    this.stats.requests += asks.length;
    const rows = await this.shared<(ClaimedRow & { slot: number })[]>`
      with retired as (
        -- any(array(…)): by primary key. As \`id in (select …)\`, the cached plan
        -- hash-joins the locked rows against a sequential scan of all jobs.
        update jobs set status = 'failed', error = 'exhausted: max retries exceeded', finished_at = now(),
                        last_heartbeat_at = now()
        where id = any(array(select id from jobs
                             where capability = ${capability} and status = 'working' and owner_instance_id is null
                               and attempt_count > max_retries
                             for update skip locked))
        returning id
      ), picked as (
        select id, row_number() over (order by submitted_at, id) as slot
        from (select id, submitted_at from jobs
              where capability = ${capability} and status = 'working' and owner_instance_id is null
                and attempt_count <= max_retries
              order by submitted_at, id
              limit ${this.shared.unsafe(String(slotOwners.length))} -- a literal (1..100): the plan is made for it
              for update skip locked) as head
      ), slots as (
        select owner, slot from unnest(${slotOwners}::text[]) with ordinality as s(owner, slot)
      ), claimed as (
        update jobs j set owner_instance_id = slots.owner, attempt_count = j.attempt_count + 1,
                          claim_epoch = j.claim_epoch + 1, lease_expires_at = ${leaseExpiry(this.shared, this.settings.defaultLeaseSeconds)},
                          last_heartbeat_at = now(), claimed_by_replica = ${this.settings.replicaId}
        from picked join slots on slots.slot = picked.slot
        where j.id = picked.id
        returning j.id, j.submitted_payload, j.attempt_count, j.claim_epoch, j.lease_expires_at as lease,
                  j.max_duration, j.recv_cursor, j.total_deadline as deadline, picked.slot
      )
      select * from claimed order by slot`;
    const out = asks.map((): ClaimedJob[] => []);
    for (const r of rows) {
      out[slotAsk[r.slot - 1] as number]?.push(toClaimedJob(r));
    }
    return out;
  }
}

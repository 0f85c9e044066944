/**
 * The owner-delta path of JobStore (progress, completion, failure): plain
 * deltas of concurrent requests share one fenced statement (DESIGN.md §4.3),
 * others are applied one by one; a refused write is classified by a read of
 * the row as it is now (`refusal`, `isReplay`).
 */
import type { Sql } from '@mesh/db';
import {
  type BatchResponse,
  type DeltaRejection,
  isTerminal,
  type JobDelta,
  jobStatuses,
} from '@mesh/protocol';
import { Coalescer } from './coalescer.ts';
import {
  coalescing,
  isUuid,
  type JobFence,
  type JobSettings,
  leaseExpiry,
  retryAlone,
} from './job-common.ts';

interface DeltaAsk {
  instanceId: string;
  deltas: JobDelta[];
}
type DeltaOutcome = { response: BatchResponse } | { error: unknown };

/** Which precondition of a fenced delta failed, given the row as it is now (`undefined`: no such job). */
function refusal(
  row: JobFence | undefined,
  instanceId: string,
  epoch: number | null,
  validStatus: boolean,
): DeltaRejection {
  if (!row) return 'not_found';
  if (epoch !== null && (row.owner_instance_id !== instanceId || row.claim_epoch !== epoch))
    return 'claim_superseded';
  if (epoch === null && row.owner_instance_id !== instanceId) return 'not_owner';
  if (isTerminal(row.status)) return 'already_terminal';
  if (!validStatus) return 'invalid_status';
  // The row changed between the write and this read and now matches again:
  // report the conservative outcome rather than guessing.
  return epoch !== null ? 'claim_superseded' : 'not_owner';
}

/**
 * The owner's terminal write again, after the first one committed but its
 * answer was lost (a connection cut after the commit, a request bound that
 * answered 503 first): the row already holds that very outcome, by this
 * owner at this epoch. Only the owner at that epoch could have written it
 * (sweeps, deadlines and cancels clear the owner or set another status), so
 * it is answered as accepted, and nothing is written twice. Without this the
 * agent is told its completion failed although it was applied (issue 16).
 */
function isReplay(
  row: JobFence | undefined,
  instanceId: string,
  epoch: number | null,
  status: string | null | undefined,
): boolean {
  return (
    row !== undefined &&
    (status === 'completed' || status === 'failed') &&
    row.status === status &&
    row.owner_instance_id === instanceId &&
    // Fenced writes only: the epoch-less legacy path keeps 3.7's answer.
    epoch !== null &&
    row.claim_epoch === epoch
  );
}

/** A finished row as the delta statements return it (JobStore's duration histogram). */
export type FinishedRow = { capability: string; status: string; age: number };

/** Owner deltas for JobStore.applyDeltas; `stats` is JobStore.statementStats.delta. */
export class JobDeltas {
  private readonly deltas: Coalescer<DeltaAsk, DeltaOutcome>;
  /** Delta statements running and delta requests waiting for one. */
  get state(): { inFlight: number; waiting: number } {
    return this.deltas.state;
  }

  constructor(
    private readonly sql: Sql,
    private readonly shared: Sql,
    private readonly settings: JobSettings,
    private readonly stats: { requests: number; statements: number },
    private readonly finished: (rows: readonly FinishedRow[]) => void,
  ) {
    this.deltas = new Coalescer((asks) => this.deltaStatement(asks), {
      maxInFlight: coalescing.deltasInFlight,
      maxWeight: coalescing.maxDeltasPerStatement,
      weight: (ask) => ask.deltas.length,
      keys: (ask) => ask.deltas.map((d) => d.id as string),
    });
  }

  /**
   * Applies owner deltas; each is independent (3.7 semantics). Concurrent
   * requests whose deltas are plain (a job id, a known or no status, no
   * recv_cursor) share one fenced statement (`deltaStatement`); any other
   * request is applied delta by delta, in order.
   */
  async applyDeltas(instanceId: string, deltas: JobDelta[]): Promise<BatchResponse> {
    const ids = new Set(deltas.map((d) => d.id as string));
    if (ids.size === deltas.length && deltas.every((d) => this.plainDelta(d))) {
      const outcome = await this.deltas.submit({ instanceId, deltas });
      if ('error' in outcome) throw outcome.error;
      return outcome.response;
    }
    return this.applyDeltasInOrder(instanceId, deltas);
  }

  private plainDelta(d: JobDelta): boolean {
    if (!isUuid(d.id as string) || d.recv_cursor) return false;
    if ((d.claim_epoch ?? null) === null && this.settings.requireClaimEpoch) return false;
    return (
      d.status === undefined || d.status === null || (jobStatuses as readonly string[]).includes(d.status)
    );
  }

  private async applyDeltasInOrder(instanceId: string, deltas: JobDelta[]): Promise<BatchResponse> {
    const rejected: BatchResponse['rejected'] = [];
    let accepted = 0;
    for (const delta of deltas) {
      const id = delta.id as string;
      const reason = await this.applyDelta(instanceId, id, delta);
      if (reason) rejected.push({ id, reason });
      else accepted += 1;
    }
    return { accepted, rejected };
  }

  /**
   * The fenced write of `applyDelta` for the plain deltas of several requests
   * in one statement (DESIGN.md §4.3): a row changes only for its current
   * owner, at the current epoch when one is given, while it is live; a
   * terminal row is never touched (§11 item 7). The coalescer gives it
   * distinct job ids only. Rows are listed in id order so that concurrent
   * statements tend to lock in one order. If PostgreSQL refuses the statement (a value
   * it cannot store, a deadlock), nothing of it was committed and each request
   * is applied on its own, so the failure stays with the request that caused it.
   */
  private async deltaStatement(asks: DeltaAsk[]): Promise<DeltaOutcome[]> {
    const rows = asks
      .flatMap((ask) =>
        ask.deltas.map((d) => ({
          job_id: d.id as string,
          owner: ask.instanceId,
          epoch: d.claim_epoch ?? null,
          new_status: d.status ?? null,
          new_progress: d.progress ?? null,
          new_message: d.progress_message ?? null,
          new_result:
            d.status === 'completed' && d.result !== undefined && d.result !== null ? d.result : null,
          new_error: d.status === 'failed' ? (d.error ?? null) : null,
        })),
      )
      .sort((a, b) => (a.job_id < b.job_id ? -1 : a.job_id > b.job_id ? 1 : 0));
    this.stats.statements += 1;
    this.stats.requests += asks.length;
    let updated: Set<string>;
    try {
      const done = await this.shared<{ id: string; capability: string; status: string; age: number }[]>`
        update jobs j set
          last_heartbeat_at = now(),
          lease_expires_at = case when d.new_status in ('completed', 'failed', 'cancelled') then j.lease_expires_at
                             else ${leaseExpiry(this.shared, this.settings.defaultLeaseSeconds)} end,
          progress = coalesce(d.new_progress, j.progress),
          progress_message = coalesce(d.new_message, j.progress_message),
          status = coalesce(d.new_status, j.status),
          result = coalesce(d.new_result, j.result),
          error = coalesce(d.new_error, j.error),
          finished_at = case when d.new_status in ('completed', 'failed', 'cancelled') then now() else j.finished_at end
        from (select * from jsonb_to_recordset(${this.shared.json(rows as never)}) as r(
                job_id uuid, owner text, epoch bigint, new_status text, new_progress float8, new_message text,
                new_result jsonb, new_error text)
              -- A literal (the exact row count; one statement text, so one cached plan,
              -- per count): it tells the planner how few rows there are, so it looks
              -- them up by primary key, and no parameter changes the estimate, so the
              -- connection keeps one generic plan instead of planning at every call
              -- (test/jobs/plans.test.ts checks both).
              limit ${this.shared.unsafe(String(rows.length))}) as d
        where j.id = d.job_id and j.owner_instance_id = d.owner
          -- "live", spelled so that no partial index of live rows matches (a plan made
          -- for a larger recordset would rather scan all live claims; the CHECK
          -- constraint allows five statuses).
          and j.status not in ('completed', 'failed', 'cancelled')
          and (d.epoch is null or j.claim_epoch = d.epoch)
        returning j.id, j.capability, j.status, extract(epoch from now() - j.submitted_at)::float8 as age`;
      updated = new Set(done.map((r) => r.id));
      this.finished(done);
    } catch (err) {
      if (!retryAlone(err)) throw err;
      return Promise.all(
        asks.map((ask) =>
          this.applyDeltasInOrder(ask.instanceId, ask.deltas).then(
            (response) => ({ response }),
            (error: unknown) => ({ error }),
          ),
        ),
      );
    }
    const refusedIds = rows.map((r) => r.job_id).filter((id) => !updated.has(id));
    const current = new Map(
      refusedIds.length
        ? (
            await this.sql<(JobFence & { id: string })[]>`
              select id, owner_instance_id, claim_epoch, status from jobs where id = any(${refusedIds}::uuid[])`
          ).map((r) => [r.id, r])
        : [],
    );
    return asks.map((ask) => {
      const rejected: BatchResponse['rejected'] = [];
      let accepted = 0;
      for (const d of ask.deltas) {
        const id = d.id as string;
        if (updated.has(id) || isReplay(current.get(id), ask.instanceId, d.claim_epoch ?? null, d.status))
          accepted += 1;
        else
          rejected.push({
            id,
            reason: refusal(current.get(id), ask.instanceId, d.claim_epoch ?? null, true),
          });
      }
      return { response: { accepted, rejected } };
    });
  }

  private async applyDelta(instanceId: string, id: string, d: JobDelta): Promise<DeltaRejection | undefined> {
    const epoch = d.claim_epoch ?? null;
    if (epoch === null && this.settings.requireClaimEpoch) return 'epoch_required';
    if (!isUuid(id)) return 'not_found';
    const status = d.status ?? null;
    const validStatus = status === null || (jobStatuses as readonly string[]).includes(status);
    if (validStatus) {
      const terminal = status !== null && isTerminal(status);
      const hasResult = status === 'completed' && d.result !== undefined && d.result !== null;
      const cursor = d.recv_cursor ? this.sql.json(d.recv_cursor) : null;
      // Fenced write (DESIGN.md §4.3): only the current owner, at the current
      // epoch when one is given, of a live job. A terminal row is never touched
      // (§11 item 7): terminal states are final.
      const updated = await this.sql<{ id: string; capability: string; status: string; age: number }[]>`
        update jobs set
          last_heartbeat_at = now(),
          lease_expires_at = case when ${terminal}::boolean then lease_expires_at else ${leaseExpiry(this.sql, this.settings.defaultLeaseSeconds)} end,
          progress = coalesce(${d.progress ?? null}::float8, progress),
          progress_message = coalesce(${d.progress_message ?? null}::text, progress_message),
          ${
            // Only deltas that carry a cursor get the merge: a statement without the
            // subquery gets a generic plan, so PostgreSQL does not re-plan every call.
            cursor
              ? this.sql`recv_cursor = (
                  select jsonb_object_agg(key, v) from (
                    select key, max(value::bigint) as v
                    from (select * from jsonb_each_text(coalesce(recv_cursor, '{}'::jsonb))
                          union all select * from jsonb_each_text(${cursor}::jsonb)) as both_maps
                    group by key) as merged),`
              : this.sql``
          }
          status = coalesce(${status}::text, status),
          result = case when ${hasResult}::boolean then ${hasResult ? this.sql.json(d.result as never) : null}::jsonb
                   else result end,
          error = case when ${status}::text = 'failed' and ${d.error ?? null}::text is not null then ${d.error ?? null}::text
                  else error end,
          finished_at = case when ${terminal}::boolean then now() else finished_at end
        where id = ${id} and owner_instance_id = ${instanceId} and status in ('working', 'input_required')
          and (${epoch}::bigint is null or claim_epoch = ${epoch}::bigint)
        returning id, capability, status, extract(epoch from now() - submitted_at)::float8 as age`;
      if (updated.length === 1) {
        this.finished(updated);
        return undefined;
      }
    }
    return this.whyRefused(instanceId, id, epoch, validStatus, d.status);
  }

  /** After a fenced write changed nothing: reads the row, and `refusal` says which precondition failed. */
  private async whyRefused(
    instanceId: string,
    id: string,
    epoch: number | null,
    validStatus: boolean,
    status?: string | null,
  ): Promise<DeltaRejection | undefined> {
    const [row] = await this.sql<JobFence[]>`
      select owner_instance_id, claim_epoch, status from jobs where id = ${id}`;
    if (isReplay(row, instanceId, epoch, status)) return undefined;
    return refusal(row, instanceId, epoch, validStatus);
  }
}

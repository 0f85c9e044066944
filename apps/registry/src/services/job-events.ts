/**
 * The event log of JobStore: appending to a live job's log, one conditional
 * statement (DESIGN.md §4.2) whose preconditions include the log's bounds;
 * reads of the log are in job-reads.ts.
 */
import type { Sql } from '@mesh/db';
import { isTerminal, limits } from '@mesh/protocol';
import { ApiError } from '../errors.ts';
import { isUuid, jobChannel, jobNotFound, jobTerminal, seconds } from './job-common.ts';

/** Event appends for JobStore.postEvent, on its request pool. */
export class JobEventLog {
  constructor(private readonly sql: Sql) {}

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
}

/**
 * The reads of JobStore: a job, the GET /jobs page, live claims, a job's
 * events and state, and the signals of an instance's claims. Each is one
 * statement and writes nothing.
 */
import type { Sql } from '@mesh/db';
import { isTerminal, type Job, type JobEvent, type JobSignal, type JobStatus, limits } from '@mesh/protocol';
import {
  isUuid,
  type JobFence,
  type JobRow,
  type JobSettings,
  jobNotFound,
  seconds,
  toJob,
} from './job-common.ts';

export interface ListFilter {
  statuses: string[];
  owner: string | undefined;
  capability: string | undefined;
  submittedSince: number | undefined;
  limit: number;
  after: { micros: bigint; id: string } | undefined;
}

/** Reads for JobStore, on its request pool. */
export class JobReads {
  constructor(
    private readonly sql: Sql,
    private readonly settings: JobSettings,
  ) {}

  /**
   * Live claims (reference §5): live jobs with an owner, fleet-wide, and how
   * many of them this replica handed out.
   */
  async liveClaims(): Promise<{ total: number; mine: number }> {
    const [row] = await this.sql<{ total: number; mine: number }[]>`
      select count(*)::int as total,
             count(*) filter (where claimed_by_replica = ${this.settings.replicaId})::int as mine
      from jobs where owner_instance_id is not null and status in ('working', 'input_required')`;
    return row ?? { total: 0, mine: 0 };
  }

  async get(id: string): Promise<Job> {
    const [row] = await this.sql<JobRow[]>`select * from jobs where id = ${id}`;
    if (!row) throw jobNotFound(id);
    return toJob(row);
  }

  /** GET /jobs: newest first, keyset pagination on (submitted_at, id). */
  async list(
    f: ListFilter,
  ): Promise<{ rows: Job[]; last: { micros: bigint; id: string } | undefined; more: boolean }> {
    const s = this.sql;
    // `desc nulls last` as jobs_list_idx is declared (both columns are NOT NULL,
    // so the order is the same): plain `desc` means nulls first, which the index
    // cannot give, and every page sorted the whole table (issue 17, plans.test.ts).
    // The page ends early past limits.maxResponseBytes of payloads and results
    // (the first row always comes): the cursor continues from the last row sent.
    const rows = await s<(JobRow & { micros: string; n: string; fetched: string })[]>`
      select * from (
        select j.*, row_number() over w as n, count(*) over () as fetched,
               sum(octet_length(submitted_payload::text) + coalesce(octet_length(result::text), 0)) over w as running
        from (
          select *, (extract(epoch from submitted_at) * 1000000)::bigint::text as micros from jobs
          where true
            ${f.statuses.length ? s`and status = any(${f.statuses})` : s``}
            ${f.owner ? s`and owner_instance_id = ${f.owner}` : s``}
            ${f.capability ? s`and capability = ${f.capability}` : s``}
            ${f.submittedSince ? s`and submitted_at >= to_timestamp(${f.submittedSince})` : s``}
            ${
              f.after
                ? s`and (submitted_at, id) < ('epoch'::timestamptz + ${f.after.micros.toString()}::bigint * interval '1 microsecond', ${f.after.id}::uuid)`
                : s``
            }
          order by submitted_at desc nulls last, id desc nulls last
          -- A literal (the route allows 1..200), so that the generic plan is
          -- made for the page's size.
          limit ${s.unsafe(String(Math.trunc(f.limit) + 1))}) as j
        window w as (order by submitted_at desc nulls last, id desc nulls last)) as budgeted
      where n = 1 or running <= ${limits.maxResponseBytes}
      order by submitted_at desc nulls last, id desc nulls last`;
    const cut = rows.length < Number(rows[0]?.fetched ?? 0);
    const more = cut || rows.length > f.limit;
    const kept = cut ? rows : rows.slice(0, f.limit);
    const tail = kept.at(-1);
    return {
      rows: kept.map(toJob),
      last: tail ? { micros: BigInt(tail.micros), id: tail.id } : undefined,
      more,
    };
  }

  /**
   * Up to `limit` events after `after`, and no more than limits.maxResponseBytes
   * of them (the first always): the caller continues from the last seq returned.
   * One statement, a read: seqs are dense per job (§4.2), so resuming from the
   * last one returned loses and repeats nothing.
   */
  async readEvents(id: string, after: number, types: string[], limit: number): Promise<JobEvent[]> {
    const rows = await this.sql<(Omit<JobEvent, 'created_at'> & { created_at: Date })[]>`
      select job_id, seq, type, payload, trace_context, posted_by, created_at from (
        select e.*, row_number() over w as n,
               sum(octet_length(type) + coalesce(octet_length(payload::text), 0)
                   + coalesce(octet_length(trace_context::text), 0)) over w as running
        from (select job_id, seq, type, payload, trace_context, posted_by, created_at from job_events
              where job_id = ${id} and seq > ${after} ${types.length ? this.sql`and type = any(${types})` : this.sql``}
              order by seq limit ${limit}) as e
        window w as (order by seq)) as budgeted
      where n = 1 or running <= ${limits.maxResponseBytes}
      order by seq`;
    return rows.map((r) => ({ ...r, created_at: seconds(r.created_at) as number }));
  }

  /** `live`, `terminal` or `missing`: what an observer read needs to know. */
  async jobState(id: string): Promise<'live' | 'terminal' | 'missing'> {
    const [row] = await this.sql<{ status: string }[]>`select status from jobs where id = ${id}`;
    if (!row) return 'missing';
    return isTerminal(row.status) ? 'terminal' : 'live';
  }

  /**
   * Which of an instance's claims are no longer its live claim (`POST
   * /jobs/signals`): one read of the rows as committed now. Every statement
   * that takes a job from its owner (cancel, force reclaim, lease and orphan
   * sweeps, deadline, staleness) calls pg_notify in that same statement, so a
   * waiter re-reads as soon as the change commits, on any replica.
   */
  async claimSignals(instanceId: string, claims: { id: string; epoch: number }[]): Promise<JobSignal[]> {
    const valid = claims.filter((c) => isUuid(c.id));
    const rows = valid.length
      ? await this.sql<(JobFence & { id: string; status: JobStatus })[]>`
          select id, owner_instance_id, claim_epoch, status from jobs
          where id = any(${[...new Set(valid.map((c) => c.id))]}::uuid[])`
      : [];
    const byId = new Map(rows.map((r) => [r.id, r]));
    const out: JobSignal[] = [];
    for (const c of claims) {
      const r = byId.get(c.id);
      if (!r) {
        out.push({ id: c.id, claim_epoch: c.epoch, signal: 'not_found', status: null });
        continue;
      }
      // The classification of renewLeases: another owner or epoch means superseded,
      // whatever became of the job since; cancelled/terminal only for this claim.
      const mine = r.owner_instance_id === instanceId && Number(r.claim_epoch) === c.epoch;
      if (mine && !isTerminal(r.status)) continue;
      const signal = !mine ? 'superseded' : r.status === 'cancelled' ? 'cancelled' : 'terminal';
      out.push({ id: c.id, claim_epoch: c.epoch, signal, status: r.status });
    }
    return out;
  }
}

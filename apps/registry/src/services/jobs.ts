import { createHash } from 'node:crypto';
import type { Sql } from '@mesh/db';
import {
  type BatchResponse,
  type ClaimedJob,
  type DeltaRejection,
  isTerminal,
  type Job,
  type JobDelta,
  type JobEvent,
  type JobSignal,
  type JobStatus,
  jobStatuses,
  type LeaseOutcome,
  limits,
  type ReclaimResponse,
  type ReleaseResponse,
} from '@mesh/protocol';
import postgres from 'postgres';
import { ApiError, isDatabaseUnavailable } from '../errors.ts';
import { ClaimableNotifier, claimableChannel } from './claimable-notifier.ts';
import { Coalescer } from './coalescer.ts';

/** Channel on which every replica hears "something happened to job X". */
export const jobChannel = 'mesh_jobs';

/**
 * Parked long-poll claims wake on any replica through `claimableChannel`
 * (payload `n:capability`): the lease and orphan sweeps notify in their own
 * statement (one notification per capability); submissions, releases and
 * force reclaims through the ClaimableNotifier, after they commit (it says why).
 */
export { claimableChannel };

export interface JobSettings {
  /** Lease window for a job without max_duration, in seconds. */
  defaultLeaseSeconds: number;
  /** Refuse epoch-less owner writes. */
  requireClaimEpoch: boolean;
  /** This replica's id, recorded on the claims it hands out. */
  replicaId: string;
}

interface JobRow {
  id: string;
  capability: string;
  status: JobStatus;
  owner_instance_id: string | null;
  claim_epoch: number;
  attempt_count: number;
  max_retries: number;
  max_duration: number | null;
  total_deadline: Date | null;
  lease_expires_at: Date | null;
  last_heartbeat_at: Date | null;
  submitted_at: Date;
  submitted_by: string;
  submitted_payload: Record<string, unknown>;
  progress: number | null;
  progress_message: string | null;
  result: unknown;
  error: string | null;
  recv_cursor: Record<string, number> | null;
}

const seconds = (d: Date | null): number | null => (d ? Math.floor(d.getTime() / 1000) : null);
const cursorOrNull = (c: Record<string, number> | null) => (c && Object.keys(c).length > 0 ? c : null);

/** A row as the 3.7 wire's Job object. */
export function toJob(r: JobRow): Job {
  return {
    id: r.id,
    capability: r.capability,
    owner_instance_id: r.owner_instance_id,
    claim_epoch: r.claim_epoch,
    recv_cursor: cursorOrNull(r.recv_cursor),
    status: r.status,
    progress: r.progress,
    progress_message: r.progress_message,
    result: r.result ?? null,
    error: r.error,
    submitted_payload: r.submitted_payload,
    attempt_count: r.attempt_count,
    max_retries: r.max_retries,
    max_duration: r.max_duration,
    total_deadline: seconds(r.total_deadline),
    lease_expires_at: seconds(r.lease_expires_at),
    last_heartbeat_at: seconds(r.last_heartbeat_at),
    submitted_at: seconds(r.submitted_at) as number,
    submitted_by: r.submitted_by,
  };
}

/**
 * The retry-budget rule (DESIGN.md §4.5), written once for every path that
 * takes a job from its owner (release, force reclaim, lease expiry, orphan
 * sweep): within budget the job is queued again as `working` (also from
 * `input_required`), past it the job fails with `exhaustedError`. A SET list
 * for `update jobs`.
 */
export const requeueOrFail = (sql: Sql, exhaustedError: string, heartbeat: 'clear' | 'now' = 'clear') => sql`
  owner_instance_id = null, lease_expires_at = null, claimed_by_replica = null,
  status = case when attempt_count > max_retries then 'failed' else 'working' end,
  error = case when attempt_count > max_retries then ${exhaustedError}::text else error end,
  finished_at = case when attempt_count > max_retries then now() else null end,
  last_heartbeat_at = ${heartbeat === 'now' ? sql`now()` : sql`case when attempt_count > max_retries then now() else null end`}`;

interface ClaimAsk {
  instanceId: string;
  max: number;
}
interface DeltaAsk {
  instanceId: string;
  deltas: JobDelta[];
}
type DeltaOutcome = { response: BatchResponse } | { error: unknown };
type ClaimOutcome = { claimed: ClaimedJob[] } | { error: unknown };

/**
 * How far concurrent requests are coalesced. Fewer statements in flight make
 * bigger statements under load; more lower the wait of a request that arrives
 * while one runs. Measured with `pnpm bench:jobs` (docs/benchmarks.md): one
 * claim statement per capability and two delta statements at a time did best.
 */
const coalescing = { claimsInFlight: 1, deltasInFlight: 2, maxDeltasPerStatement: 200 };

/**
 * A shared statement failed without committing anything, so its requests can
 * be re-run one by one: PostgreSQL refused it (it was rolled back), or it
 * never left this process (e.g. a value JSON.stringify could not serialise).
 * Not after a lost connection, when the statement may have committed.
 */
const retryAlone = (err: unknown): boolean =>
  !isDatabaseUnavailable(err) &&
  (err instanceof postgres.PostgresError || !(err as { code?: unknown })?.code);

/** What a refused owner write is judged by: the row as it is now. */
interface JobFence {
  owner_instance_id: string | null;
  claim_epoch: number;
  status: string;
}

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

export const jobNotFound = (id: string) => new ApiError('not_found', `job not found: ${id}`);
export const jobTerminal = () => new ApiError('already_terminal', 'job is already in a terminal state');

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

export interface ListFilter {
  statuses: string[];
  owner: string | undefined;
  capability: string | undefined;
  submittedSince: number | undefined;
  limit: number;
  after: { micros: bigint; id: string } | undefined;
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
  private readonly claimers = new Map<string, Coalescer<ClaimAsk, ClaimOutcome>>();
  /** Delta statements running and delta requests waiting for one (tests, debugging). */
  get deltaQueue(): { inFlight: number; waiting: number } {
    return this.deltas.state;
  }
  private readonly deltas: Coalescer<DeltaAsk, DeltaOutcome>;
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

  constructor(
    private readonly sql: Sql,
    private readonly settings: JobSettings,
    private readonly shared: Sql = sql,
  ) {
    this.notifier = new ClaimableNotifier(sql);
    this.deltas = new Coalescer((asks) => this.deltaStatement(asks), {
      maxInFlight: coalescing.deltasInFlight,
      maxWeight: coalescing.maxDeltasPerStatement,
      weight: (ask) => ask.deltas.length,
      keys: (ask) => ask.deltas.map((d) => d.id as string),
    });
  }

  /**
   * The lease a (re)newed claim gets: now + max_duration (or the default
   * window), never past total_deadline (DESIGN.md §4.1).
   */
  private lease(sql: Sql = this.sql) {
    return sql`least(now() + make_interval(secs => coalesce(max_duration, ${this.settings.defaultLeaseSeconds}::int)),
                          coalesce(total_deadline, 'infinity'::timestamptz))`;
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
    // A pushed job is running from the start: it counts as the first attempt, so
    // it gets exactly max_retries retries like a claimed one (MCP Mesh gives push
    // mode one more; reference §11 item 15).
    const [row] = await this.sql<Created[]>`
      insert into jobs (id, capability, submitted_by, submitted_payload, max_retries, max_duration, total_deadline,
                        owner_instance_id, attempt_count, idempotency_key, idempotency_fingerprint)
      values (${id}, ${job.capability}, ${job.submittedBy}, ${this.sql.json(job.payload as never)}, ${job.maxRetries},
              ${job.maxDuration}, ${job.totalDeadline === null ? null : new Date(job.totalDeadline * 1000)},
              ${job.owner}, ${job.owner ? 1 : 0}, ${idempotency?.key ?? null}, ${idempotency?.digest ?? null})
      -- One job per key across replicas (DESIGN.md §4.2, one conditional
      -- statement): jobs_idempotency_key_idx decides. A concurrent insert of the
      -- same key waits for the first to commit, then inserts nothing; no row
      -- back means the key names a job already, and a read finds it.
      on conflict (idempotency_key) where idempotency_key is not null do nothing
      returning id, status, owner_instance_id`;
    // A queued job wakes parked claims of its capability on every replica (a pushed one has its owner).
    if (row && row.owner_instance_id === null) this.notifier.queued(job.capability);
    return row;
  }

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
    this.statementStats.claim.statements += 1;
    this.statementStats.claim.requests += asks.length;
    const rows = await this.shared<
      (ClaimedJob & { lease: Date | null; deadline: Date | null; slot: number })[]
    >`
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
                          claim_epoch = j.claim_epoch + 1, lease_expires_at = ${this.lease(this.shared)},
                          last_heartbeat_at = now(), claimed_by_replica = ${this.settings.replicaId}
        from picked join slots on slots.slot = picked.slot
        where j.id = picked.id
        returning j.id, j.submitted_payload, j.attempt_count, j.claim_epoch, j.lease_expires_at as lease,
                  j.max_duration, j.recv_cursor, j.total_deadline as deadline, picked.slot
      )
      select * from claimed order by slot`;
    const out = asks.map((): ClaimedJob[] => []);
    for (const r of rows) {
      out[slotAsk[r.slot - 1] as number]?.push({
        id: r.id,
        submitted_payload: r.submitted_payload,
        attempt_count: r.attempt_count,
        claim_epoch: r.claim_epoch,
        lease_expires_at: seconds(r.lease),
        max_duration: r.max_duration,
        recv_cursor: r.recv_cursor,
        total_deadline: seconds(r.deadline),
      });
    }
    return out;
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
    this.statementStats.delta.statements += 1;
    this.statementStats.delta.requests += asks.length;
    let updated: Set<string>;
    try {
      const done = await this.shared<{ id: string; capability: string; status: string; age: number }[]>`
        update jobs j set
          last_heartbeat_at = now(),
          lease_expires_at = case when d.new_status in ('completed', 'failed', 'cancelled') then j.lease_expires_at
                             else ${this.lease(this.shared)} end,
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
          lease_expires_at = case when ${terminal}::boolean then lease_expires_at else ${this.lease()} end,
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

  private finished(rows: readonly { capability: string; status: string; age: number }[]): void {
    if (!this.onFinished) return;
    for (const r of rows) {
      if (r.status === 'completed' || r.status === 'failed') this.onFinished(r.capability, r.status, r.age);
    }
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

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Job ids are UUIDs; anything else cannot name a job (and must not reach a uuid column). */
export const isUuid = (id: string): boolean => uuidPattern.test(id);

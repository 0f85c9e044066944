import type { Sql } from '@mesh/db';
import { formatGoDuration } from '../duration.ts';
import { isDatabaseUnavailable } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { inOutageGrace, type LiveFence, liveFence } from './agents.ts';
import { claimableChannel, jobChannel, requeueOrFail } from './jobs.ts';
import { Ticker } from './ticker.ts';

export interface SweepSettings {
  intervalMs: number;
  /** 0 = the stale ceiling is off. */
  staleTimeoutMs: number;
  /** 0 = keep events of finished jobs. */
  eventRetentionMs: number;
  /** 0 = keep finished jobs. */
  jobRetentionMs: number;
  /** Rows deleted per retention phase and tick, so one tick stays short. */
  batchSize?: number;
  /**
   * The orphan sweep leaves a job alone while its owner touched it (claim,
   * delta, lease renewal, executor read) within this window: the agent timeout.
   */
  orphanQuietMs: number;
  /**
   * When set, the lease and orphan sweeps act only while this replica's own
   * heartbeat is recent on the database clock: a sweep statement held up by
   * a partition and delivered after it heals finds the heartbeat stale and
   * changes nothing, until the heartbeat (which starts the outage grace when
   * the whole registry was away, services/replicas.ts) has committed.
   */
  liveFence?: LiveFence;
}

export interface SweepCounts {
  orphansRequeued: number;
  orphansFailed: number;
  leaseRequeued: number;
  leaseFailed: number;
  deadlineFailed: number;
  staleFailed: number;
  eventsPurgedJobs: number;
  jobsDeleted: number;
}

const live = `status in ('working', 'input_required')`;

/**
 * For a sweep's select over its requeued rows (`window w as (partition by
 * capability, status)`): one `n:capability` notification per capability whose
 * jobs went back to the queue, so parked long-poll claims wake on every replica.
 */
const requeuedNotice = (sql: Sql) => sql`
  case when status = 'working' and row_number() over w = 1
       then pg_notify(${claimableChannel}, (count(*) over w) || ':' || capability) end as woke`;

/**
 * The registry's background sweeps (DESIGN.md §4): every phase is one
 * conditional statement on the database clock, so every replica may run them
 * at once: a row another replica already changed no longer matches the WHERE
 * clause when the statement re-checks it after the row lock.
 */
export class Sweeper {
  private readonly ticker: Ticker;
  /** Takes a failure caused by an unreachable database (true: handled, counted, not logged here). */
  databaseDown: ((err: unknown) => boolean) | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly settings: SweepSettings,
    private readonly logger: Logger,
    private readonly onCounts?: (counts: SweepCounts) => void,
  ) {
    this.ticker = new Ticker(
      this.settings.intervalMs,
      () => this.runOnce(),
      (err) => this.databaseDown?.(err) || this.logger.warn({ err }, 'sweep failed; retrying next interval'),
    );
  }

  /**
   * Expired leases (§4.5): the job goes back to the queue within its retry
   * budget, fails past it. `input_required` is normalised to `working` so the
   * job is claimable again. The evicted owner is fenced by its stale epoch.
   */
  async expireLeases(): Promise<{ requeued: number; failed: number }> {
    const rows = await this.sql<{ status: string }[]>`
      with expired as (
        update jobs set ${requeueOrFail(this.sql, 'lease expired: no completion within lease window')}
        where ${this.sql.unsafe(live)} and lease_expires_at < now() and not ${this.sql.unsafe(inOutageGrace)}
          ${liveFence(this.sql, this.settings.liveFence)}
        returning id, status, capability
      )
      select status, pg_notify(${jobChannel}, id::text), ${requeuedNotice(this.sql)} from expired window w as (partition by capability, status)`;
    return {
      requeued: rows.filter((r) => r.status === 'working').length,
      failed: rows.filter((r) => r.status === 'failed').length,
    };
  }

  /**
   * Orphans: live jobs whose owner is an agent that turned unhealthy (or
   * unregistered) go back to the queue within budget, fail past it. The owner
   * rows are locked FOR SHARE, so an agent re-registering at that moment either
   * commits first (and keeps its jobs) or waits. Owners that never registered
   * are left to their leases. Nothing happens during the post-outage grace.
   * A job its owner touched within the agent timeout is left to its lease
   * too: an agent whose heartbeat lags (reconnect backoff) but whose worker
   * claims and renews is alive, and sweeping the jobs it has just claimed
   * would burn their retry budget in a loop.
   */
  async resetOrphans(): Promise<{ requeued: number; failed: number }> {
    const rows = await this.sql<{ status: string }[]>`
      with orphaned as (
        update jobs set ${requeueOrFail(this.sql, 'orphaned: max retries exceeded')}
        where ${this.sql.unsafe(live)} and not ${this.sql.unsafe(inOutageGrace)} ${liveFence(this.sql, this.settings.liveFence)}
          and owner_instance_id in (select agent_id from agents where status = 'unhealthy' for share)
          and coalesce(last_heartbeat_at, '-infinity') < now() - ${this.settings.orphanQuietMs}::bigint * interval '1 millisecond'
        returning id, status, capability
      )
      select status, pg_notify(${jobChannel}, id::text), ${requeuedNotice(this.sql)} from orphaned window w as (partition by capability, status)`;
    return {
      requeued: rows.filter((r) => r.status === 'working').length,
      failed: rows.filter((r) => r.status === 'failed').length,
    };
  }

  /**
   * total_deadline passed: the job fails, whatever its budget, and a
   * `deadline_exceeded` event tells a handler parked in a long-poll at once
   * (§11 item 8). Guarded by status: never overwrites a completion (§11 item 7).
   */
  async expireDeadlines(): Promise<number> {
    const rows = await this.sql`
      with expired as (
        update jobs set status = 'failed', error = 'deadline_exceeded', owner_instance_id = null,
                        lease_expires_at = null, claimed_by_replica = null, finished_at = now(),
                        last_heartbeat_at = now(), event_seq = event_seq + 1
        where ${this.sql.unsafe(live)} and total_deadline < now()
        returning id, event_seq
      ), event as (
        insert into job_events (job_id, seq, type, payload)
        select id, event_seq, 'deadline_exceeded', '{"reason": "deadline_exceeded"}'::jsonb from expired
      )
      select pg_notify(${jobChannel}, id::text) from expired`;
    return rows.length;
  }

  /**
   * The opt-in stale ceiling: a job without total_deadline running longer than
   * max(stale timeout, max_duration) since submission fails, with MCP Mesh's
   * error wording and a `stale` event.
   */
  async expireStale(): Promise<number> {
    const staleSeconds = Math.floor(this.settings.staleTimeoutMs / 1000);
    if (staleSeconds <= 0) return 0;
    const ceilingText = formatGoDuration(staleSeconds * 1000);
    const rows = await this.sql`
      with expired as (
        update jobs set status = 'failed', owner_instance_id = null, lease_expires_at = null,
          claimed_by_replica = null, finished_at = now(), last_heartbeat_at = now(), event_seq = event_seq + 1,
          error = case
            when coalesce(max_duration, 0) > ${staleSeconds}::int then
              'stale: no total_deadline set and exceeded max_duration (' ||
              case when max_duration >= 3600 then (max_duration / 3600) || 'h' || (max_duration % 3600 / 60) || 'm'
                                                  || (max_duration % 60) || 's'
                   when max_duration >= 60 then (max_duration / 60) || 'm' || (max_duration % 60) || 's'
                   else max_duration || 's' end || ')'
            else ${`stale: no total_deadline set and exceeded the MCP_MESH_JOB_STALE_TIMEOUT ceiling (${ceilingText})`}
          end
        where ${this.sql.unsafe(live)} and total_deadline is null
          and submitted_at < now() - make_interval(secs => greatest(${staleSeconds}::int, coalesce(max_duration, 0)))
        returning id, event_seq, error
      ), event as (
        insert into job_events (job_id, seq, type, payload)
        select id, event_seq, 'stale', jsonb_build_object('reason', 'stale', 'detail', error) from expired
      )
      select pg_notify(${jobChannel}, id::text) from expired`;
    return rows.length;
  }

  /**
   * Deletes the events of jobs that finished longer ago than the event
   * retention, a batch at a time, and marks those jobs so they are never
   * scanned again (§11 item 13).
   */
  async purgeEvents(): Promise<number> {
    if (this.settings.eventRetentionMs <= 0) return 0;
    const rows = await this.sql`
      with victims as (
        select id from jobs
        where finished_at is not null and not events_purged
          and finished_at < now() - ${this.settings.eventRetentionMs}::bigint * interval '1 millisecond'
        order by finished_at limit ${this.settings.batchSize ?? 1000}
        for update skip locked
      ), purged as (
        delete from job_events e using victims v where e.job_id = v.id
      )
      update jobs set events_purged = true from victims where jobs.id = victims.id
      returning jobs.id`;
    return rows.length;
  }

  /** Deletes finished jobs (and, by cascade, their events) past the job retention. */
  async deleteFinishedJobs(): Promise<number> {
    if (this.settings.jobRetentionMs <= 0) return 0;
    const rows = await this.sql`
      delete from jobs where id in (
        select id from jobs
        where finished_at is not null
          and finished_at < now() - ${this.settings.jobRetentionMs}::bigint * interval '1 millisecond'
        order by finished_at limit ${this.settings.batchSize ?? 1000}
        for update skip locked)
      returning id`;
    return rows.length;
  }

  /**
   * One pass of every phase, in order. Each phase fails alone: one that the
   * database refuses is logged and counted as zero, and the others still run.
   */
  async runOnce(): Promise<SweepCounts> {
    const phase = async <T>(name: string, run: () => Promise<T>, none: T): Promise<T> => {
      try {
        return await run();
      } catch (err) {
        // Without a database every phase would fail the same way: the tick fails once.
        if (isDatabaseUnavailable(err)) throw err;
        this.logger.warn({ err, phase: name }, 'sweep phase failed');
        return none;
      }
    };
    const noneMoved = { requeued: 0, failed: 0 };
    const orphans = await phase('orphans', () => this.resetOrphans(), noneMoved);
    const lease = await phase('leases', () => this.expireLeases(), noneMoved);
    const counts: SweepCounts = {
      orphansRequeued: orphans.requeued,
      orphansFailed: orphans.failed,
      leaseRequeued: lease.requeued,
      leaseFailed: lease.failed,
      deadlineFailed: await phase('deadlines', () => this.expireDeadlines(), 0),
      staleFailed: await phase('stale', () => this.expireStale(), 0),
      eventsPurgedJobs: await phase('event_retention', () => this.purgeEvents(), 0),
      jobsDeleted: await phase('job_retention', () => this.deleteFinishedJobs(), 0),
    };
    if (Object.values(counts).some((n) => n > 0)) this.logger.info(counts, 'sweep');
    this.onCounts?.(counts);
    return counts;
  }

  start(): void {
    // A random first delay spreads the replicas' sweeps apart.
    this.ticker.start(Math.floor(Math.random() * this.settings.intervalMs));
  }

  stop(): Promise<void> {
    return this.ticker.stop();
  }
}

import type { Sql } from '@mesh/db';
import type { Logger } from '../logger.ts';
import type { FleetDrainState } from './replicas.ts';

/** Claimable jobs of one capability, and how long the oldest has waited (database clock). */
export interface QueueStat {
  capability: string;
  depth: number;
  oldest_age_seconds: number;
}

/** What the replica last read about the fleet: one statement per interval. */
export interface StatusValues {
  live_claims: number;
  live_claims_this_replica: number;
  queue: QueueStat[];
  fleet_drain: FleetDrainState;
  replicas: { live: number; stale: number };
  agents: Record<string, number>;
  /**
   * Live replicas of a release that queues work without notifying parked
   * long-poll claims (before 0.2.0): while there are any, parked claims
   * look again every couple of seconds (services/claim-waiters.ts).
   */
  silent_replicas: number;
}

/** A database call that did not answer in time: the route answers from what it knows. */
export class DatabaseTimeout extends Error {
  override readonly name = 'DatabaseTimeout';
  readonly code = 'DATABASE_TIMEOUT';
  constructor(ms: number) {
    super(`the database did not answer within ${ms} ms`);
  }
}

/** `promise`, or a DatabaseTimeout after `ms` (the promise keeps running; its outcome is dropped). */
export function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DatabaseTimeout(ms)), ms);
    timer.unref();
  });
  promise.catch(() => {}); // a late failure after the timeout is not unhandled
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface StatusMonitorOptions {
  replicaId: string;
  /** How often the values are read. */
  intervalMs: number;
  /** A replica is live when heard from within this window (the replicas' own rule). */
  liveWindowMs: number;
  /** How long one read may take before the database counts as down. */
  timeoutMs: number;
}

/**
 * Keeps what operators look at (`/metrics`, `GET /admin/drain`) fresh in the
 * background, so neither waits on the database at request time, and tracks
 * whether the database answers: one warn line when it stops answering, one
 * info line (with what failed meanwhile) when it is back, instead of a stack
 * per failed request.
 *
 * It reads on a connection of its own, so a busy request pool never makes the
 * database look down, and a hung read never holds a request connection.
 */
export class StatusMonitor {
  private current: StatusValues | undefined;
  private readAtMs: number | undefined;
  private up = true;
  private downSinceMs = 0;
  private lastSuccessMs = Date.now();
  private failedRequests = 0;
  private failedReads = 0;
  private reading: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly options: StatusMonitorOptions,
    private readonly logger: Logger,
  ) {}

  /** The last successful read, if any. */
  get values(): StatusValues | undefined {
    return this.current;
  }

  /** Seconds since the last successful read (null before the first one). */
  get ageSeconds(): number | null {
    return this.readAtMs === undefined ? null : (Date.now() - this.readAtMs) / 1000;
  }

  get databaseUp(): boolean {
    return this.up;
  }

  /** Reads the values now, unless a read is already under way (then waits for it, bounded). */
  async refresh(): Promise<void> {
    this.reading ??= this.read().finally(() => {
      this.reading = undefined;
    });
    await within(this.reading, this.options.timeoutMs).catch((err: Error) => this.failed(err, 'status'));
  }

  /** A request or a background task reached the database: it is up. */
  succeeded(): void {
    this.lastSuccessMs = Date.now();
    if (this.up) return;
    this.up = true;
    this.logger.info(
      {
        down_ms: Date.now() - this.downSinceMs,
        failed_requests: this.failedRequests,
        failed_background: this.failedReads,
      },
      'database reachable again',
    );
    this.failedRequests = 0;
    this.failedReads = 0;
  }

  /**
   * A request, a background task or this monitor's own read failed because
   * the database did not answer; logs only the transition. Only this
   * monitor's read (its own connection) declares an outage at once: a request
   * failing on a connection broken by an outage that just ended must not
   * reopen it, so others count as an outage only past a second without success.
   */
  failed(err: Error, source: 'status' | 'request' | 'task'): void {
    if (source === 'request') this.failedRequests += 1;
    else this.failedReads += 1;
    if (!this.up) return;
    if (source !== 'status' && Date.now() - this.lastSuccessMs < 1_000) return;
    this.up = false;
    this.downSinceMs = Date.now();
    const code = (err as { code?: unknown }).code;
    this.logger.warn(
      { reason: err.message, code, source },
      'database unreachable: requests that need it answer 503; /metrics and /admin/drain answer from the last read',
    );
  }

  private async read(): Promise<void> {
    const live = this.options.liveWindowMs;
    // One statement: every value comes from the same snapshot and costs one round trip.
    // The queue uses the claimable partial index (jobs_claimable_idx).
    const [row] = await this.sql<
      {
        live: { total: number; mine: number };
        queue: QueueStat[];
        fleet_drain: FleetDrainState | null;
        replicas: { live: number; stale: number };
        agents: Record<string, number>;
        silent: number;
      }[]
    >`
      select
        (select json_build_object('total', count(*),
                                  'mine', count(*) filter (where claimed_by_replica = ${this.options.replicaId}))
         from jobs where owner_instance_id is not null and status in ('working', 'input_required')) as live,
        (select coalesce(json_agg(q order by q.capability), '[]'::json) from (
           select capability, count(*)::int as depth,
                  extract(epoch from now() - min(submitted_at))::float8 as oldest_age_seconds
           from jobs
           where status = 'working' and owner_instance_id is null and attempt_count <= max_retries
           group by capability) q) as queue,
        (select value from registry_settings where key = 'fleet_drain') as fleet_drain,
        (select json_build_object(
                  'live', count(*) filter (where last_seen_at >= now() - ${live}::bigint * interval '1 millisecond'),
                  'stale', count(*) filter (where last_seen_at < now() - ${live}::bigint * interval '1 millisecond'))
         from registry_replicas where stopped_at is null) as replicas,
        (select count(*)::int from registry_replicas
         where stopped_at is null and last_seen_at >= now() - ${live}::bigint * interval '1 millisecond'
           and version ~ '^0[.][01][.]') as silent,
        (select coalesce(json_object_agg(status, n), '{}'::json)
         from (select status, count(*)::int as n from agents group by status) a) as agents`;
    if (!row) return;
    this.current = {
      live_claims: row.live.total,
      live_claims_this_replica: row.live.mine,
      queue: row.queue,
      fleet_drain: row.fleet_drain ?? { draining: false, since: null },
      replicas: row.replicas,
      agents: { healthy: 0, unhealthy: 0, ...row.agents },
      silent_replicas: row.silent,
    };
    this.readAtMs = Date.now();
    this.succeeded();
  }

  start(): void {
    const tick = () => {
      void this.refresh().finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.options.intervalMs);
      });
    };
    this.timer = setTimeout(tick, this.options.intervalMs);
  }

  /** Stops reading; waits for a read under way, bounded by the read timeout. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.reading) await within(this.reading, this.options.timeoutMs).catch(() => {});
  }
}

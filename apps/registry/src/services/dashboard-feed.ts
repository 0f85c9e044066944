import { appliedMigrations, blockingMigrations, type Sql } from '@mesh/db';
import type {
  DashboardJob,
  DashboardReplica,
  DashboardSnapshot,
  ReplicaInfo,
  ThroughputPoint,
} from '@mesh/protocol';
import type { Identity } from '../identity.ts';
import type { Logger } from '../logger.ts';
import { agentInfo } from './agent-listing.ts';
import type { AgentStore } from './agents.ts';
import type { QueueStat } from './status.ts';

export interface DashboardFeedOptions {
  /** One read per tick, whatever the number of dashboards open. */
  intervalMs: number;
  /** The slower parts (job counts, agents, migration ledger) every this many ticks. */
  slowEvery: number;
  /** A replica is live when heard from within this window (the replicas' own rule). */
  liveWindowMs: number;
  /** Throughput points kept (one per tick). */
  historyPoints: number;
  /** Bound on one replica's `/metrics` read. */
  scrapeTimeoutMs: number;
}

/** Gets each snapshot's JSON; `null` when the feed stops (shutdown): end the stream. */
type Subscriber = (json: string | null) => void;

interface FastRow {
  replicas: (Omit<DashboardReplica, 'state' | 'schema_verdict' | 'schema_reason' | 'live_claims'> & {
    stale: boolean;
  })[];
  claims_by_replica: Record<string, number>;
  live_claims: number;
  queue: QueueStat[];
  fleet_drain: { draining: boolean; since: string | null } | null;
  recent: DashboardJob[];
}

/** Counter values of one replica boot, for rates. */
interface Counters {
  claims: number;
  completions: number;
}

const metricLine = (text: string, name: string, label: RegExp): number =>
  text
    .split('\n')
    .filter((l) => l.startsWith(name) && label.test(l))
    .reduce((sum, l) => sum + (Number(l.slice(l.lastIndexOf(' ') + 1)) || 0), 0);

/**
 * The single source of every open dashboard (docs/dashboard.md): while at
 * least one subscriber listens, reads the fleet once per tick on a connection
 * of its own, serializes one snapshot and hands the same string to every
 * subscriber. With no subscriber it does nothing.
 */
export class DashboardFeed {
  private readonly subscribers = new Set<Subscriber>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private ticks = 0;
  private last: DashboardSnapshot | undefined;
  private lastJson: string | undefined;
  private readonly history: ThroughputPoint[] = [];
  private readonly counters = new Map<string, Counters & { atMs: number }>();
  private stopped = false;

  constructor(
    private readonly sql: Sql,
    private readonly agents: AgentStore,
    private readonly identity: Identity,
    private readonly options: DashboardFeedOptions,
    private readonly logger: Logger,
  ) {}

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Adds a subscriber; it gets the last snapshot at once if there is one. Returns the unsubscribe. */
  subscribe(fn: Subscriber): () => void {
    if (this.stopped) throw new Error('dashboard feed stopped');
    this.subscribers.add(fn);
    if (this.lastJson) fn(this.lastJson);
    if (!this.timer && !this.running) this.schedule(0);
    return () => {
      this.subscribers.delete(fn);
    };
  }

  /** Ends every stream (shutdown) and stops reading. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const fn of this.subscribers) fn(null);
    this.subscribers.clear();
    await this.running;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.subscribers.size === 0 || this.stopped) return;
      this.running = this.tick()
        .catch((err: Error) => this.logger.debug({ err: err.message }, 'dashboard read failed'))
        .finally(() => {
          this.running = undefined;
          if (this.subscribers.size > 0 && !this.stopped) this.schedule(this.options.intervalMs);
        });
    }, delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const slow = this.ticks % this.options.slowEvery === 0 || !this.last;
    this.ticks += 1;
    const prev = this.last;
    let snapshot: DashboardSnapshot;
    try {
      const [fast, slowPart] = await Promise.all([this.readFast(), slow ? this.readSlow() : undefined]);
      snapshot = {
        at: new Date().toISOString(),
        served_by: {
          replica_id: this.identity.replicaId,
          boot_id: this.identity.bootId,
          version: this.identity.version,
          schema_version: this.identity.schemaVersion,
        },
        database: 'up',
        fleet_drain: fast.fleet_drain ?? { draining: false, since: null },
        live_claims: fast.live_claims,
        replicas: [],
        queue: fast.queue,
        throughput: this.history,
        jobs: {
          counts: slowPart?.counts ?? prev?.jobs.counts ?? [],
          counts_at: slowPart ? new Date().toISOString() : (prev?.jobs.counts_at ?? null),
          recent: fast.recent,
        },
        agents: slowPart?.agents ?? prev?.agents ?? { list: [], truncated: false, read_at: null },
        schema: slowPart?.schema ?? prev?.schema ?? { database_version: 0, migrations: [] },
      };
      snapshot.replicas = fast.replicas.map((r) =>
        this.withVerdict({ ...r, live_claims: fast.claims_by_replica[r.replica_id] ?? 0 }, slowPart?.applied),
      );
      await this.sampleThroughput(snapshot);
    } catch (err) {
      if (!prev) throw err;
      snapshot = { ...prev, at: new Date().toISOString(), database: 'unreachable' };
    }
    this.last = snapshot;
    this.lastJson = JSON.stringify(snapshot);
    for (const fn of this.subscribers) fn(this.lastJson);
  }

  private applied: Awaited<ReturnType<typeof appliedMigrations>> = [];

  private withVerdict(
    r: FastRow['replicas'][number] & { live_claims: number },
    applied = this.applied,
  ): DashboardReplica {
    const state = r.stopped_at ? 'stopped' : r.stale ? 'stale' : 'live';
    // A replica knows the migrations below its schema version; an unknown one
    // that is breaking for its release blocks it (services/schema-guard.ts's rule).
    const [blocking] = blockingMigrations(applied, (m) => m.idx < r.schema_version, r.version);
    return {
      ...r,
      state,
      schema_verdict: blocking ? 'incompatible' : 'compatible',
      ...(blocking
        ? {
            schema_reason: `${blocking.name} is breaking for ${r.version}${blocking.reason ? `: ${blocking.reason}` : ''}`,
          }
        : {}),
    };
  }

  /** Every per-tick value in one statement (one snapshot, one round trip). */
  private async readFast(): Promise<FastRow> {
    const live = this.options.liveWindowMs;
    const [row] = await this.sql<FastRow[]>`
      select
        (select coalesce(json_agg(r order by r.replica_id), '[]'::json) from (
           select rr.replica_id, rr.boot_id, rr.version, rr.schema_version, rr.main_url, rr.admin_url,
                  to_char(rr.started_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as started_at,
                  to_char(rr.last_seen_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as last_seen_at,
                  rr.draining,
                  to_char(rr.draining_since at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as draining_since,
                  to_char(rr.stopped_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as stopped_at,
                  rr.stopped_at is null and rr.last_seen_at < now() - ${live}::bigint * interval '1 millisecond' as stale,
                  rr.stopped_at is null and rr.last_seen_at >= now() - ${live}::bigint * interval '1 millisecond' as live
           from registry_replicas rr) r) as replicas,
        -- Apart from the replicas (not joined to them): joined, the planner may
        -- scan the whole jobs table instead of the live-claims partial index.
        (select coalesce(json_object_agg(coalesce(claimed_by_replica, ''), n), '{}'::json) from (
           select claimed_by_replica, count(*)::int as n from jobs
           where owner_instance_id is not null and status in ('working', 'input_required')
           group by claimed_by_replica) c) as claims_by_replica,
        (select count(*)::int from jobs
         where owner_instance_id is not null and status in ('working', 'input_required')) as live_claims,
        (select coalesce(json_agg(q order by q.capability), '[]'::json) from (
           select capability, count(*)::int as depth,
                  extract(epoch from now() - min(submitted_at))::float8 as oldest_age_seconds
           from jobs
           where status = 'working' and owner_instance_id is null and attempt_count <= max_retries
           group by capability) q) as queue,
        (select value from registry_settings where key = 'fleet_drain') as fleet_drain,
        (select coalesce(json_agg(j order by j.submitted_at desc, j.job_id desc), '[]'::json) from (
           select id as job_id, capability, status, owner_instance_id, claimed_by_replica, attempt_count,
                  max_retries, progress, submitted_by,
                  (extract(epoch from submitted_at) * 1000)::float8 as submitted_at,
                  (extract(epoch from submitted_at) * 1000000)::bigint::text as submitted_us
           -- The table's columns (not the output aliases), NULLS LAST as jobs_list_idx
           -- is declared: the newest 50 come from the index, not from sorting the
           -- whole table every tick.
           from jobs order by jobs.submitted_at desc nulls last, jobs.id desc nulls last limit 50) j) as recent`;
    if (!row) throw new Error('no row');
    return row;
  }

  private async readSlow() {
    const [counts, agents, applied] = await Promise.all([
      // A scan of the jobs table: every `slowEvery` ticks, not every tick.
      this.sql<{ status: DashboardJob['status']; capability: string; n: number }[]>`
        select status, capability, count(*)::int as n from jobs group by status, capability
        order by capability, status`,
      this.agents.list(),
      appliedMigrations(this.sql),
    ]);
    this.applied = applied;
    const top = applied.reduce((m, a) => Math.max(m, a.idx + 1), 0);
    return {
      counts: [...counts],
      applied,
      agents: {
        list: agents.agents.map(agentInfo),
        truncated: agents.truncated,
        read_at: new Date().toISOString(),
      },
      schema: {
        database_version: top,
        migrations: applied.map((m) => ({
          name: m.name,
          compatibility: m.compatibility,
          release: m.release,
          oldest_compatible: m.oldestCompatible,
        })),
      },
    };
  }

  /**
   * Fleet rates from every live replica's own counters (`/metrics`, no
   * database): the claims a replica handed out are only counted by it.
   */
  private async sampleThroughput(s: DashboardSnapshot): Promise<void> {
    const live = s.replicas.filter((r): r is DashboardReplica & { main_url: string } =>
      Boolean(r.state === 'live' && r.main_url),
    );
    const now = Date.now();
    let claims = 0;
    let completions = 0;
    let known = 0;
    await Promise.all(
      live.map(async (r: ReplicaInfo & { main_url: string }) => {
        const text = await fetch(`${r.main_url}/metrics`, {
          signal: AbortSignal.timeout(this.options.scrapeTimeoutMs),
        })
          .then((res) => (res.ok ? res.text() : undefined))
          .catch(() => undefined);
        if (text === undefined) return;
        const cur = {
          claims: metricLine(text, 'mesh_claims_total', /outcome="claimed"/),
          completions: metricLine(text, 'mesh_jobs_finished_total', /status="/),
          atMs: now,
        };
        const before = this.counters.get(r.boot_id);
        this.counters.set(r.boot_id, cur);
        if (!before) return;
        const dt = (cur.atMs - before.atMs) / 1000;
        if (dt <= 0) return;
        claims += Math.max(0, cur.claims - before.claims) / dt;
        completions += Math.max(0, cur.completions - before.completions) / dt;
        known += 1;
      }),
    );
    const liveBoots = new Set(live.map((r) => r.boot_id));
    for (const boot of this.counters.keys()) if (!liveBoots.has(boot)) this.counters.delete(boot);
    this.history.push({
      t: now,
      claims: known ? +claims.toFixed(2) : null,
      completions: known ? +completions.toFixed(2) : null,
      queue: s.queue.reduce((n, q) => n + q.depth, 0),
    });
    if (this.history.length > this.options.historyPoints) this.history.shift();
  }
}

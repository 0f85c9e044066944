import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { type Admission, routeClasses } from './admission.ts';
import type { PoolUsage } from './pool-usage.ts';
import type { StatusValues } from './status.ts';

/**
 * Distinct capabilities `mesh_job_duration_seconds` labels; later ones count
 * as `other`. Capabilities are named by callers of the unauthenticated main
 * port: without a cap, made-up names would grow the histogram without bound.
 */
export const maxDurationCapabilities = 100;

/** What the replica keeps fresh in the background (services/status.ts): read at scrape, never queried. */
export interface MetricsStatus {
  readonly values: StatusValues | undefined;
  readonly ageSeconds: number | null;
  readonly databaseUp: boolean;
}

/** Where the metrics read their values from at scrape time, and what to expose (createMetrics). */
export interface MetricsSources {
  /** Background-read values; absent in single-process tests (no live-claims, queue or fleet gauges). */
  status?: MetricsStatus;
  draining: () => boolean;
  /** `mesh_build_info` labels. */
  build?: { version: string; replicaId: string; bootId: string; schemaVersion: number };
  /** prom-client's process metrics (CPU, memory, event-loop lag); once per process. */
  processMetrics?: boolean;
  /** Connections the replica may open: --db-pool-size + --db-job-pool-size + 2 for heartbeats. */
  poolSize: number;
  /** Requests served by shared statements, and those statements (JobStore.statementStats). */
  statements?: () => Record<string, { requests: number; statements: number }>;
  /** The replica's PostgreSQL pools by name (main, jobs, status), counted by PoolUsage. */
  pools?: Record<string, PoolUsage>;
  /** Bounded admission per route class: in-flight and queued gauges. */
  admission?: Admission;
  /** Long-poll claims parked now (ClaimWaiters.parkedCount); absent when the feature is off. */
  parkedClaims?: () => number;
  /** Submissions handed to a parked claim (ClaimWaiters.handoffs). */
  claimHandoffs?: () => number;
}

/**
 * The registry's Prometheus metrics. One registry per app instance (so tests
 * can build several apps in one process); scraped at `GET /metrics`. Each
 * family registers in turn, in the order the scrape shows them.
 */
export function createMetrics(collect: MetricsSources) {
  const registry = new Registry();
  const http = httpMetrics(registry);
  const jobs = jobMetrics(registry);
  if (collect.pools) poolGauges(registry, collect.pools);
  if (collect.status) statusGauges(registry, collect.status);
  replicaGauges(registry, collect);
  sharedStatementMetrics(registry, collect);
  const overload = overloadMetrics(registry, collect.admission);
  return {
    registry,
    requests: http.requests,
    latency: http.latency,
    claims: jobs.claims,
    deltas: jobs.deltas,
    sweeps: jobs.sweeps,
    jobsFinished: jobs.jobsFinished,
    jobFinished: jobs.jobFinished,
    shed: overload.shed,
    databaseTimeouts: overload.databaseTimeouts,
    connectionsDropped: overload.connectionsDropped,
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Pool gauges, read from the counters at scrape time (services/pool-usage.ts). */
function poolGauges(registry: Registry, pools: Record<string, PoolUsage>): void {
  const each = (name: string, help: string, read: (p: PoolUsage) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['pool'] as const,
      registers: [registry],
      collect() {
        for (const [pool, usage] of Object.entries(pools)) this.set({ pool }, read(usage));
      },
    });
  each(
    'mesh_db_pool_connections_in_use',
    'PostgreSQL connections busy with a statement or transaction, by pool',
    (p) => p.inUse,
  );
  each(
    'mesh_db_pool_statements_waiting',
    'Statements waiting for a connection of the pool (queued, or pipelined behind another), by pool',
    (p) => p.waiting,
  );
  each(
    'mesh_db_pool_statements_in_flight_max',
    'Most statements and transactions in flight at once since the previous scrape, by pool (above the size: some waited)',
    (p) => p.takePeak(),
  );
  each('mesh_db_pool_size', 'Connections the pool may open, by pool', (p) => p.max);
}

/** Gauges set from the background read at scrape time: no collector touches the database. */
function statusGauges(registry: Registry, status: MetricsStatus): void {
  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    set: (g: Gauge<L>, v: StatusValues) => void,
  ) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        const v = status.values;
        this.reset();
        if (v) set(this, v);
      },
    });
  new Gauge({
    name: 'mesh_database_up',
    help: '1 while the database answers this replica (background read or requests), 0 during an outage',
    registers: [registry],
    collect() {
      this.set(status.databaseUp ? 1 : 0);
    },
  });
  new Gauge({
    name: 'mesh_status_age_seconds',
    help: 'Age of the values the database-backed gauges show (the last successful background read)',
    registers: [registry],
    collect() {
      this.set(status.ageSeconds ?? -1);
    },
  });
  gauge(
    'mesh_live_claims',
    'Live jobs with an owner, fleet-wide (scope=fleet) and handed out by this replica (scope=replica)',
    ['scope'],
    (g, v) => {
      g.set({ scope: 'fleet' }, v.live_claims);
      g.set({ scope: 'replica' }, v.live_claims_this_replica);
    },
  );
  gauge('mesh_queue_depth', 'Claimable jobs waiting, by capability', ['capability'], (g, v) => {
    for (const q of v.queue) g.set({ capability: q.capability }, q.depth);
  });
  gauge(
    'mesh_queue_oldest_age_seconds',
    'How long the oldest claimable job has waited, by capability (database clock)',
    ['capability'],
    (g, v) => {
      for (const q of v.queue) g.set({ capability: q.capability }, q.oldest_age_seconds);
    },
  );
  gauge('mesh_fleet_draining', '1 while a fleet drain is stored in the database', [], (g, v) => {
    g.set(v.fleet_drain.draining ? 1 : 0);
  });
  gauge(
    'mesh_replicas',
    'Replicas not stopped, by state: live (heard from recently) or stale',
    ['state'],
    (g, v) => {
      g.set({ state: 'live' }, v.replicas.live);
      g.set({ state: 'stale' }, v.replicas.stale);
    },
  );
  gauge('mesh_agents', 'Registered agents by status', ['status'], (g, v) => {
    for (const [s, n] of Object.entries(v.agents)) g.set({ status: s }, n);
  });
}

/** HTTP requests by route, method and status, and their latency (set by the app's request hook). */
function httpMetrics(registry: Registry) {
  const requests = new Counter({
    name: 'mesh_http_requests_total',
    help: 'HTTP requests by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'mesh_http_request_duration_seconds',
    help: 'HTTP request latency by route and method',
    labelNames: ['route', 'method'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [registry],
  });
  return { requests, latency };
}

/**
 * The job paths: claims, owner deltas and sweeps by outcome, jobs finished,
 * and `jobFinished`, which feeds the duration histogram (JobStore.onFinished).
 */
function jobMetrics(registry: Registry) {
  const claims = new Counter({
    name: 'mesh_claims_total',
    help: 'Claim requests by outcome: claimed (jobs handed out), empty, draining; client_gone counts jobs claimed for a client that left before its answer, timed_out jobs claimed after the database bound answered 503; both given back at once',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const deltas = new Counter({
    name: 'mesh_deltas_total',
    help: 'Owner deltas by outcome (accepted or the rejection reason)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const sweeps = new Counter({
    name: 'mesh_sweep_actions_total',
    help: 'Rows changed by the sweeper, by phase',
    labelNames: ['phase'] as const,
    registers: [registry],
  });
  const jobsFinished = new Counter({
    name: 'mesh_jobs_finished_total',
    help: 'Jobs this replica saw finish through an owner delta, by status (completed, failed)',
    labelNames: ['status'] as const,
    registers: [registry],
  });
  const durations = new Histogram({
    name: 'mesh_job_duration_seconds',
    help:
      'Submission to terminal write of the jobs this replica saw finish through an owner delta, ' +
      `by capability (the first ${maxDurationCapabilities}, then "other") and outcome (completed, failed)`,
    labelNames: ['capability', 'outcome'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400],
    registers: [registry],
  });
  const capabilities = new Set<string>();
  const jobFinished = (capability: string, outcome: string, seconds: number) => {
    if (!capabilities.has(capability) && capabilities.size < maxDurationCapabilities)
      capabilities.add(capability);
    durations.observe(
      { capability: capabilities.has(capability) ? capability : 'other', outcome },
      Math.max(0, seconds),
    );
  };
  return { claims, deltas, sweeps, jobsFinished, jobFinished };
}

/**
 * This replica: its build, prom-client's process metrics (when asked for),
 * whether it is draining, and the connections it may open.
 */
function replicaGauges(
  registry: Registry,
  collect: Pick<MetricsSources, 'build' | 'processMetrics' | 'draining' | 'poolSize'>,
): void {
  if (collect.build) {
    const b = collect.build;
    new Gauge({
      name: 'mesh_build_info',
      help: 'Always 1: the version, replica id, boot id and schema version of this process',
      labelNames: ['version', 'replica_id', 'boot_id', 'schema_version'] as const,
      registers: [registry],
    }).set(
      { version: b.version, replica_id: b.replicaId, boot_id: b.bootId, schema_version: b.schemaVersion },
      1,
    );
  }
  if (collect.processMetrics) collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'mesh_draining',
    help: '1 while this replica hands out no claims',
    registers: [registry],
    collect() {
      this.set(collect.draining() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'mesh_db_pool_max_connections',
    help: 'PostgreSQL connections this replica may open: the pool and the connections of the shared job and heartbeat statements',
    registers: [registry],
    collect() {
      this.set(collect.poolSize);
    },
  });
}

/**
 * Shared statements and long-poll claims, read at scrape time: the requests
 * coalesced into shared statements and those statements, the claims parked
 * now, and the submissions handed to one.
 */
function sharedStatementMetrics(
  registry: Registry,
  collect: Pick<MetricsSources, 'statements' | 'parkedClaims' | 'claimHandoffs'>,
): void {
  if (collect.statements) {
    const read = collect.statements;
    const counted = [
      [
        'requests',
        'mesh_coalesced_requests_total',
        'Claim, delta and heartbeat requests served by shared database statements, by kind',
      ],
      [
        'statements',
        'mesh_coalesced_statements_total',
        'Shared database statements that served claim, delta and heartbeat requests, by kind',
      ],
    ] as const;
    for (const [field, name, help] of counted) {
      new Counter({
        name,
        help,
        labelNames: ['kind'] as const,
        registers: [registry],
        collect() {
          this.reset();
          for (const [kind, s] of Object.entries(read())) this.inc({ kind }, s[field]);
        },
      });
    }
  }
  if (collect.parkedClaims) {
    const read = collect.parkedClaims;
    new Gauge({
      name: 'mesh_parked_claims',
      help: 'Long-poll claims (wait_ms) parked on this replica until work for their capability is queued',
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  }
  if (collect.claimHandoffs) {
    const read = collect.claimHandoffs;
    new Counter({
      name: 'mesh_claim_handoffs_total',
      help: 'Jobs submitted on this replica and handed at once to a long-poll claim parked here (inserted claimed)',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  }
}

/**
 * Overload: requests shed by admission, requests the database bound answered
 * 503, connections dropped at --max-connections, and, with `admission`, the
 * requests in flight and queued per route class.
 */
function overloadMetrics(registry: Registry, admission: Admission | undefined) {
  const shed = new Counter({
    name: 'mesh_requests_shed_total',
    help: 'Requests shed with 503 overloaded, by route class and reason (queue_full, queue_timeout)',
    labelNames: ['class', 'reason'] as const,
    registers: [registry],
  });
  const databaseTimeouts = new Counter({
    name: 'mesh_db_request_timeouts_total',
    help: 'Requests answered 503 because the database did not answer within --db-request-timeout',
    registers: [registry],
  });
  const connectionsDropped = new Counter({
    name: 'mesh_connections_dropped_total',
    help: 'Main-port connections closed on arrival because --max-connections were open',
    registers: [registry],
  });
  if (admission) {
    new Gauge({
      name: 'mesh_requests_in_flight',
      help: 'Main-port requests being served (state=active) or waiting for a slot (state=queued), by route class',
      labelNames: ['class', 'state'] as const,
      registers: [registry],
      collect() {
        for (const cls of routeClasses) {
          const load = admission.load(cls);
          this.set({ class: cls, state: 'active' }, load.active);
          this.set({ class: cls, state: 'queued' }, load.queued);
        }
      },
    });
  }
  return { shed, databaseTimeouts, connectionsDropped };
}

import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The registry's Prometheus metrics. One registry per app instance (so tests
 * can build several apps in one process); scraped at `GET /metrics`.
 */
export function createMetrics(collect: {
  liveClaims: () => Promise<{ total: number; mine: number }>;
  draining: () => boolean;
  /** Connections the replica may open: --db-pool-size + --db-job-pool-size. */
  poolSize: number;
  /** Requests served by shared statements, and those statements (JobStore.statementStats). */
  statements?: () => Record<string, { requests: number; statements: number }>;
}) {
  const registry = new Registry();
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
  const claims = new Counter({
    name: 'mesh_claims_total',
    help: 'Claim requests by outcome: claimed (jobs handed out), empty, draining',
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
  new Gauge({
    name: 'mesh_live_claims',
    help: 'Live jobs with an owner, fleet-wide (scope=fleet) and handed out by this replica (scope=replica)',
    labelNames: ['scope'] as const,
    registers: [registry],
    async collect() {
      const live = await collect.liveClaims().catch(() => undefined);
      if (!live) return;
      this.set({ scope: 'fleet' }, live.total);
      this.set({ scope: 'replica' }, live.mine);
    },
  });
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
    help: 'PostgreSQL connections this replica may open: the pool and the connections of the shared job statements',
    registers: [registry],
    collect() {
      this.set(collect.poolSize);
    },
  });
  if (collect.statements) {
    const read = collect.statements;
    const counted = [
      [
        'requests',
        'mesh_coalesced_requests_total',
        'Claim and delta requests served by shared database statements, by kind',
      ],
      [
        'statements',
        'mesh_coalesced_statements_total',
        'Shared database statements that served claim and delta requests, by kind',
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
  return { registry, requests, latency, claims, deltas, sweeps };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Start-up's middle step: the services, built on the pools in dependency
 * order (status first: the others report database outages to it), and the
 * dependencies the app's routes get (`AppDeps`).
 */
import { hostname } from 'node:os';
import { readBundledMigrations } from '@mesh/db';
import { features } from '@mesh/protocol';
import type { AppDeps } from '../app-env.ts';
import type { RegistryConfig } from '../config.ts';
import { isDatabaseUnavailable } from '../errors.ts';
import type { Identity } from '../identity.ts';
import type { Logger } from '../logger.ts';
import { Admission } from '../services/admission.ts';
import { AgentStore } from '../services/agents.ts';
import { CancelForwarder } from '../services/cancel-forward.ts';
import { ClaimWaiters } from '../services/claim-waiters.ts';
import { DashboardFeed } from '../services/dashboard-feed.ts';
import { DrainGate } from '../services/drain.ts';
import { JobSignals } from '../services/job-signals.ts';
import { JobStore } from '../services/jobs.ts';
import { createMetrics, type Metrics } from '../services/metrics.ts';
import { liveWindowMs, ReplicaRegistry } from '../services/replicas.ts';
import { SchemaGuard } from '../services/schema-guard.ts';
import { StatusMonitor } from '../services/status.ts';
import { Sweeper } from '../services/sweeper.ts';
import { registryVersion } from '../version.ts';
import type { MigrationResult, Pools } from './database.ts';

/** This start's identity: a new boot id, and when it began. */
export interface Boot {
  bootId: string;
  startedAt: number;
}

export interface Services {
  identity: Identity;
  /** The URLs others reach this replica at, known once the listeners have their ports. */
  urls: { main: string; admin: string | undefined };
  status: StatusMonitor;
  /** Takes a background failure caused by an unreachable database (true: counted by `status`). */
  databaseDown(err: unknown): boolean;
  jobs: JobStore;
  signals: JobSignals;
  gate: DrainGate;
  claimWaiters: ClaimWaiters | undefined;
  agents: AgentStore;
  admission: Admission;
  metrics: Metrics;
  sweeper: Sweeper;
  replicas: ReplicaRegistry;
  schemaGuard: SchemaGuard;
  cancelForward: CancelForwarder;
  dashboard: DashboardFeed;
  /** Set when shutdown begins: /ready says `shutting_down`. */
  lifecycle: { shuttingDown: boolean };
}

/** Every service, in the order they depend on one another. */
export async function createServices(
  config: RegistryConfig,
  logger: Logger,
  pools: Pools,
  schema: MigrationResult,
  boot: Boot,
): Promise<Services> {
  const status = new StatusMonitor(
    pools.statusSql,
    {
      replicaId: config.replicaId,
      intervalMs: config.replicaHeartbeatMs,
      liveWindowMs: liveWindowMs(config.replicaHeartbeatMs),
      // Generous: routes never wait on this read, and a loaded database
      // that answers slowly is not down.
      timeoutMs: 2_000,
    },
    logger,
  );
  await status.refresh();
  // Background tasks failing because the database is away are counted by the
  // status monitor (one warn line per outage), not logged one stack per tick.
  const databaseDown = (err: unknown): boolean => {
    if (!isDatabaseUnavailable(err)) return false;
    status.failed(err as Error, 'task');
    return true;
  };
  const work = await createJobServices(config, logger, pools, status, schema, boot);
  const fleet = await createFleetServices(config, logger, pools, work, schema, boot);
  for (const s of [fleet.replicas, fleet.schemaGuard, work.sweeper]) s.databaseDown = databaseDown;
  return { status, databaseDown, lifecycle: { shuttingDown: false }, ...work, ...fleet };
}

/** Jobs, signals, the drain gate, long-poll claims, agents, admission, metrics and the sweeper. */
async function createJobServices(
  config: RegistryConfig,
  logger: Logger,
  pools: Pools,
  status: StatusMonitor,
  schema: MigrationResult,
  boot: Boot,
) {
  const { sql } = pools;
  const jobs = new JobStore(
    sql,
    {
      defaultLeaseSeconds: Math.ceil(config.defaultLeaseMs / 1000),
      requireClaimEpoch: config.requireClaimEpoch,
      replicaId: config.replicaId,
    },
    pools.jobSql,
  );
  const signals = new JobSignals(sql, logger);
  await signals.start();
  const gate = new DrainGate();
  // On the connection that LISTENs for job signals (postgres.js keeps one per pool).
  const claimWaiters = config.longPollClaim
    ? new ClaimWaiters(sql, jobs, gate, logger.child({ component: 'claim-waiters' }), {
        // From the background fleet read: 0.1.0 replicas queue work without notifying.
        fleetNotifies: () => (status.values?.silent_replicas ?? 0) === 0,
      })
    : undefined;
  await claimWaiters?.start();
  // A submission here hands its job to a claim parked here (one commit for both).
  if (claimWaiters) jobs.handoff = claimWaiters;
  const agents = new AgentStore(
    sql,
    { timeoutThresholdSeconds: Math.ceil(config.agentTimeoutMs / 1000) },
    logger.child({ component: 'agents' }),
    pools.beatSql,
  );
  const admission = new Admission({
    maxInFlight: config.maxInFlight,
    maxQueued: config.maxQueued,
    maxQueueWaitMs: config.maxQueueWaitMs,
    maxLongPolls: config.maxLongPolls,
  });
  const metrics = createMetrics({
    admission,
    status,
    draining: () => gate.draining,
    build: {
      version: registryVersion,
      replicaId: config.replicaId,
      bootId: boot.bootId,
      schemaVersion: schema.schemaVersion,
    },
    processMetrics: true,
    poolSize: config.dbPoolSize + config.dbJobPoolSize + 2,
    statements: () => ({ ...jobs.statementStats, ...agents.heartbeats.statementStats }),
    pools: pools.usage,
    ...(claimWaiters
      ? { parkedClaims: () => claimWaiters.parkedCount, claimHandoffs: () => claimWaiters.handoffs }
      : {}),
  });
  jobs.onFinished = metrics.jobFinished;
  admission.onShed = (cls, reason) => metrics.shed.inc({ class: cls, reason });
  const sweeper = new Sweeper(
    sql,
    {
      intervalMs: config.sweepIntervalMs,
      staleTimeoutMs: config.staleTimeoutMs,
      eventRetentionMs: config.eventRetentionMs,
      jobRetentionMs: config.jobRetentionMs,
      orphanQuietMs: config.agentTimeoutMs,
      liveFence: { replicaId: config.replicaId, liveWindowMs: liveWindowMs(config.replicaHeartbeatMs) },
    },
    logger.child({ component: 'sweeper' }),
    (counts) => {
      for (const [phase, n] of Object.entries(counts)) if (n > 0) metrics.sweeps.inc({ phase }, n);
    },
  );
  return { jobs, signals, gate, claimWaiters, agents, admission, metrics, sweeper };
}

/** This replica in the fleet: identity, its fleet row, the schema guard, cancel forwards, the dashboard feed. */
async function createFleetServices(
  config: RegistryConfig,
  logger: Logger,
  pools: Pools,
  work: { gate: DrainGate; agents: AgentStore },
  schema: MigrationResult,
  boot: Boot,
) {
  const { sql } = pools;
  const identity: Identity = {
    replicaId: config.replicaId,
    bootId: boot.bootId,
    version: registryVersion,
    schemaVersion: schema.schemaVersion,
    uptimeSeconds: () => Math.floor((Date.now() - boot.startedAt) / 1000),
  };
  const urls: { main: string; admin: string | undefined } = { main: '', admin: undefined };
  const replicas = new ReplicaRegistry(sql, identity, urls, config.replicaHeartbeatMs, work.gate, logger);
  const schemaGuard = new SchemaGuard(
    sql,
    new Set(readBundledMigrations().map((m) => m.name)),
    registryVersion,
    config.replicaHeartbeatMs,
    work.gate,
    logger,
  );
  // Back from a database outage: the whole registry was away when no replica
  // stayed live, and agents get the outage grace, as after a restart
  // (DESIGN.md §4.7). Decided by the heartbeat statement itself.
  replicas.outageGraceMs = config.outageGraceMs;
  // A replica that starts during a fleet drain comes up draining.
  await replicas.syncFleetDrain();
  const cancelForward = new CancelForwarder(
    {
      policy: config.cancelForward,
      timeoutMs: 2_000,
      fleet: async () => (await replicas.list()).flatMap((r) => [r.main_url ?? '', r.admin_url ?? '']),
    },
    logger.child({ component: 'cancel-forward' }),
  );
  const dashboard = new DashboardFeed(
    pools.dashboardSql,
    work.agents,
    identity,
    {
      intervalMs: 1_000,
      slowEvery: 5,
      liveWindowMs: liveWindowMs(config.replicaHeartbeatMs),
      historyPoints: 300,
      scrapeTimeoutMs: 800,
    },
    logger.child({ component: 'dashboard' }),
  );
  return { identity, urls, replicas, schemaGuard, cancelForward, dashboard };
}

/** What every route gets (`c.get('deps')`): the services, the features, the request bounds and readiness. */
export function appDeps(config: RegistryConfig, logger: Logger, pools: Pools, s: Services): AppDeps {
  return {
    identity: s.identity,
    features: [
      features.replicaIdentity,
      features.schemaVersioning,
      features.fencedRelease,
      features.batchClaim,
      features.leaseRenewal,
      features.anyJsonResult,
      features.deadlineEvents,
      features.idempotentSubmit,
      features.jobSignals,
      ...(config.claimBesideDeltas ? [features.claimBesideDeltas] : []),
      ...(s.claimWaiters ? [features.longPollClaim] : []),
    ],
    logger,
    jobs: s.jobs,
    agents: s.agents,
    signals: s.signals,
    gate: s.gate,
    claimWaiters: s.claimWaiters,
    cancelForward: s.cancelForward,
    replicas: s.replicas,
    schemaGuard: s.schemaGuard,
    metrics: s.metrics,
    status: s.status,
    dashboard: s.dashboard,
    tokens: { admin: config.adminTokens, agent: config.agentTokens, client: config.clientTokens },
    maxBodyBytes: config.maxBodyBytes,
    admission: s.admission,
    dbRequestTimeoutMs: config.dbRequestTimeoutMs,
    adminHosts: [...config.adminHosts, config.advertiseHost, hostname()],
    readiness: {
      async check() {
        const database = await Promise.race([
          pools.sql`select 1`.then(() => 'ok' as const),
          new Promise<'unreachable'>((r) => setTimeout(() => r('unreachable'), 2_000).unref()),
        ]).catch(() => 'unreachable' as const);
        const incompatible = s.schemaGuard.incompatible;
        return {
          database,
          migrations: 'done' as const,
          lifecycle: s.lifecycle.shuttingDown ? 'shutting_down' : 'running',
          ...(incompatible
            ? { schema: 'incompatible' as const, reason: incompatible }
            : { schema: 'compatible' as const }),
        };
      },
    },
  };
}

import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { hostname } from 'node:os';
import { createAdaptorServer } from '@hono/node-server';
import {
  createDb,
  describeVersion,
  migrate,
  readBundledMigrations,
  SchemaError,
  startEmbeddedPostgres,
} from '@mesh/db';
import { features } from '@mesh/protocol';
import { createApp } from './app.ts';
import type { AppDeps } from './app-env.ts';
import { answerClientErrors } from './client-error.ts';
import type { RegistryConfig } from './config.ts';
import { exitCodes, StartupError, waitForDatabase } from './database.ts';
import { isDatabaseUnavailable } from './errors.ts';
import type { Identity } from './identity.ts';
import type { Logger } from './logger.ts';
import { Admission } from './services/admission.ts';
import { AgentStore } from './services/agents.ts';
import { CancelForwarder } from './services/cancel-forward.ts';
import { ClaimWaiters } from './services/claim-waiters.ts';
import { DashboardFeed } from './services/dashboard-feed.ts';
import { DrainGate } from './services/drain.ts';
import { JobSignals } from './services/job-signals.ts';
import { JobStore } from './services/jobs.ts';
import { createMetrics } from './services/metrics.ts';
import { PoolUsage } from './services/pool-usage.ts';
import { liveWindowMs, ReplicaRegistry } from './services/replicas.ts';
import { SchemaGuard } from './services/schema-guard.ts';
import { StatusMonitor } from './services/status.ts';
import { Sweeper } from './services/sweeper.ts';
import { Ticker } from './services/ticker.ts';
import { registryVersion } from './version.ts';

export interface RunningRegistry {
  identity: Identity;
  port: number;
  adminPort: number | undefined;
  /** Graceful stop: no new connections, in-flight requests finish (up to the timeout), pool closed. */
  shutdown(reason: string): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * The requests a server is answering and its open connections with none in
 * progress. Node's closeIdleConnections() leaves a connection that never sent
 * a request open (it counts as awaiting headers), which held shutdown for the
 * whole timeout (issue 20); these are closed at shutdown too.
 */
interface Connections {
  readonly inFlight: number;
  readonly open: number;
  /** Destroys every connection with no request in progress; returns how many. */
  closeIdle(): number;
}

function trackConnections(server: Server): Connections {
  let inFlight = 0;
  const active = new Map<Socket, number>();
  server.on('connection', (socket: Socket) => {
    active.set(socket, 0);
    socket.once('close', () => active.delete(socket));
  });
  server.on('request', (req, res) => {
    inFlight += 1;
    const socket = req.socket;
    active.set(socket, (active.get(socket) ?? 0) + 1);
    res.once('close', () => {
      inFlight -= 1;
      if (active.has(socket)) active.set(socket, Math.max(0, (active.get(socket) ?? 1) - 1));
    });
  });
  return {
    get inFlight() {
      return inFlight;
    },
    get open() {
      return active.size;
    },
    closeIdle() {
      server.closeIdleConnections();
      let closed = 0;
      for (const [socket, n] of active) {
        if (n === 0) {
          socket.destroy();
          closed += 1;
        }
      }
      return closed;
    },
  };
}

/**
 * Stops accepting, closes idle keep-alive connections at once and again as
 * requests finish (a keep-alive client would otherwise hold the server open
 * until the timeout), says every second what it still waits for, and cuts
 * what is left at the timeout.
 */
function close(
  server: Server,
  conns: Connections,
  timeoutMs: number,
  logger: Logger,
  name: string,
): Promise<void> {
  return new Promise((resolve) => {
    const started = Date.now();
    const timer = setTimeout(() => {
      logger.warn(
        {
          listener: name,
          in_flight_requests: conns.inFlight,
          open_connections: conns.open,
          timeout_ms: timeoutMs,
        },
        'shutdown timeout: closing the connections still open',
      );
      server.closeAllConnections();
      for (let i = 0; i < 2; i++) conns.closeIdle();
    }, timeoutMs);
    let lastLog = started;
    // Requests finishing leave idle keep-alive connections behind: close those too.
    const sweep = setInterval(() => {
      conns.closeIdle();
      if (Date.now() - lastLog >= 1_000) {
        lastLog = Date.now();
        logger.info(
          {
            listener: name,
            in_flight_requests: conns.inFlight,
            open_connections: conns.open,
            waited_ms: Date.now() - started,
          },
          'shutdown waiting for in-flight requests',
        );
      }
    }, 100);
    server.close(() => {
      clearTimeout(timer);
      clearInterval(sweep);
      resolve();
    });
    const closed = conns.closeIdle();
    if (conns.inFlight > 0 || closed > 0) {
      logger.info(
        { listener: name, in_flight_requests: conns.inFlight, idle_connections_closed: closed },
        conns.inFlight > 0 ? 'shutdown waiting for in-flight requests' : 'closed idle connections',
      );
    }
  });
}

/**
 * Boots a registry: database (embedded when no URL is configured), migrations
 * under the advisory lock, then the listeners. Throws StartupError /
 * SchemaError with a message meant for the operator.
 */
export async function startRegistry(config: RegistryConfig, logger: Logger): Promise<RunningRegistry> {
  const bootId = randomUUID();
  const startedAt = Date.now();
  let stopEmbedded: () => Promise<void> = async () => {};
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    logger.info({ data_dir: config.dataDir }, 'no DATABASE_URL: starting the embedded PostgreSQL');
    let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>>;
    try {
      embedded = await startEmbeddedPostgres({
        dir: config.dataDir,
        database: 'mesh',
        onLog: (line) => logger.trace({ component: 'embedded-postgres' }, line),
      });
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
    databaseUrl = embedded.url;
    stopEmbedded = embedded.stop;
    logger.info(
      {
        data_dir: embedded.dataDir,
        port: embedded.port,
        postmaster_pid: embedded.pid,
        created: embedded.created,
        reused: embedded.reused,
      },
      `embedded PostgreSQL ${embedded.reused ? 'reused' : 'started'}; its data lives in ${embedded.dataDir}`,
    );
  }

  try {
    await waitForDatabase(databaseUrl, config.dbConnectTimeoutMs, (why) =>
      logger.warn({ reason: why }, 'PostgreSQL not reachable yet; retrying'),
    );
    const result = await migrate(databaseUrl, {
      lockTimeoutMs: config.migrationLockTimeoutMs,
      appliedBy: `${config.replicaId} (mesh-registry ${registryVersion})`,
      release: registryVersion,
      onApply: (m) => logger.info({ migration: m.name, compatibility: m.compatibility }, 'applied migration'),
    });
    logger.info(
      { schema_version: result.schemaVersion, applied: result.applied.length },
      `database schema at version ${describeVersion(result.databaseVersion, result.databaseVersionName)}`,
    );
    if (result.ahead.length > 0) {
      logger.info(
        {
          database_schema_version: result.databaseVersion,
          binary_schema_version: result.schemaVersion,
          ahead: result.ahead.map((m) => ({
            name: m.name,
            compatibility: m.compatibility,
            reason: m.reason,
          })),
        },
        `the database is ahead of this binary (schema ${describeVersion(result.databaseVersion, result.databaseVersionName)}, ` +
          `this binary knows ${describeVersion(result.schemaVersion, result.schemaVersionName)}); ` +
          `running on it is safe: every migration it does not know (${result.ahead.map((m) => m.name).join(', ')}) ` +
          `is declared compatible with release ${registryVersion}`,
      );
    }

    // A statement the server takes longer on than --db-statement-timeout is
    // cancelled by PostgreSQL itself (57014 → 503): the slow-database bound.
    const statementTimeout: Record<string, string> =
      config.dbStatementTimeoutMs > 0 ? { statement_timeout: String(config.dbStatementTimeoutMs) } : {};
    // Each pool counted by a wrapper (postgres.js exposes no pool counters): /metrics.
    const pools = {
      main: new PoolUsage(config.dbPoolSize),
      jobs: new PoolUsage(config.dbJobPoolSize),
      status: new PoolUsage(1),
      heartbeats: new PoolUsage(2),
    };
    const sql = pools.main.wrap(
      createDb(databaseUrl, {
        max: config.dbPoolSize,
        applicationName: `mesh-registry:${config.replicaId}`,
        settings: statementTimeout,
      }).sql,
    );
    // The shared claim and completion statements (a few at a time, services/job-claims.ts and job-deltas.ts)
    // keep connections of their own: the pool hands out its least recently used
    // connection, so on the pool they would run on a different, cold backend each
    // time (measured: PostgreSQL CPU per job about a fifth higher, docs/benchmarks.md).
    const jobSql = pools.jobs.wrap(
      createDb(databaseUrl, {
        max: config.dbJobPoolSize,
        applicationName: `mesh-registry:${config.replicaId}:jobs`,
        settings: statementTimeout,
      }).sql,
    );
    // Heartbeat timestamps only (services/heartbeats.ts): their commits need no
    // WAL flush, so these connections set synchronous_commit off. Never job
    // state, status or topology: those go through `sql`, durably.
    const beatSql = pools.heartbeats.wrap(
      createDb(databaseUrl, {
        max: 2,
        applicationName: `mesh-registry:${config.replicaId}:heartbeats`,
        settings: { synchronous_commit: 'off' },
      }).sql,
    );
    // Its own connection, short connect timeout: an outage shows within a second or two.
    const statusSql = pools.status.wrap(
      createDb(databaseUrl, {
        max: 1,
        connectTimeoutSeconds: 2,
        applicationName: `mesh-registry:${config.replicaId}:status`,
      }).sql,
    );
    const status = new StatusMonitor(
      statusSql,
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
    const jobs = new JobStore(
      sql,
      {
        defaultLeaseSeconds: Math.ceil(config.defaultLeaseMs / 1000),
        requireClaimEpoch: config.requireClaimEpoch,
        replicaId: config.replicaId,
      },
      jobSql,
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
      beatSql,
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
        bootId,
        schemaVersion: result.schemaVersion,
      },
      processMetrics: true,
      poolSize: config.dbPoolSize + config.dbJobPoolSize + 2,
      statements: () => ({ ...jobs.statementStats, ...agents.heartbeats.statementStats }),
      pools,
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
    let shuttingDown = false;
    const identity: Identity = {
      replicaId: config.replicaId,
      bootId,
      version: registryVersion,
      schemaVersion: result.schemaVersion,
      uptimeSeconds: () => Math.floor((Date.now() - startedAt) / 1000),
    };
    const urls: { main: string; admin: string | undefined } = { main: '', admin: undefined };
    const replicas = new ReplicaRegistry(sql, identity, urls, config.replicaHeartbeatMs, gate, logger);
    const schemaGuard = new SchemaGuard(
      sql,
      new Set(readBundledMigrations().map((m) => m.name)),
      registryVersion,
      config.replicaHeartbeatMs,
      gate,
      logger,
    );
    // A replica that starts during a fleet drain comes up draining.
    for (const s of [replicas, schemaGuard, sweeper]) s.databaseDown = databaseDown;
    // Back from a database outage: the whole registry was away when no replica
    // stayed live, and agents get the outage grace, as after a restart
    // (DESIGN.md §4.7). Decided by the heartbeat statement itself.
    replicas.outageGraceMs = config.outageGraceMs;
    await replicas.syncFleetDrain();
    const cancelForward = new CancelForwarder(
      {
        policy: config.cancelForward,
        timeoutMs: 2_000,
        fleet: async () => (await replicas.list()).flatMap((r) => [r.main_url ?? '', r.admin_url ?? '']),
      },
      logger.child({ component: 'cancel-forward' }),
    );
    // Its own connection (opened at the first dashboard): one read per tick
    // feeds every open dashboard (docs/dashboard.md).
    const { sql: dashboardSql } = createDb(databaseUrl, {
      max: 1,
      connectTimeoutSeconds: 2,
      applicationName: `mesh-registry:${config.replicaId}:dashboard`,
    });
    const dashboard = new DashboardFeed(
      dashboardSql,
      agents,
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
    const deps: AppDeps = {
      identity,
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
        ...(claimWaiters ? [features.longPollClaim] : []),
      ],
      logger,
      jobs,
      agents,
      signals,
      gate,
      claimWaiters,
      cancelForward,
      replicas,
      schemaGuard,
      metrics,
      status,
      dashboard,
      tokens: { admin: config.adminTokens, agent: config.agentTokens, client: config.clientTokens },
      maxBodyBytes: config.maxBodyBytes,
      admission,
      dbRequestTimeoutMs: config.dbRequestTimeoutMs,
      adminHosts: [...config.adminHosts, config.advertiseHost, hostname()],
      readiness: {
        async check() {
          const database = await Promise.race([
            sql`select 1`.then(() => 'ok' as const),
            new Promise<'unreachable'>((r) => setTimeout(() => r('unreachable'), 2_000).unref()),
          ]).catch(() => 'unreachable' as const);
          const incompatible = schemaGuard.incompatible;
          return {
            database,
            migrations: 'done' as const,
            lifecycle: shuttingDown ? 'shutting_down' : 'running',
            ...(incompatible
              ? { schema: 'incompatible' as const, reason: incompatible }
              : { schema: 'compatible' as const }),
          };
        },
      },
    };
    // With an admin port, operator routes live only there (bound to --host,
    // not every interface); without one they share the main port, as in 3.7.
    const app = createApp(deps, config.adminPort === undefined ? 'all' : 'main');
    const main = createAdaptorServer({ fetch: app.fetch }) as Server;
    answerClientErrors(main);
    // A connection flood is bounded before any request is parsed: each ready
    // socket costs the one event loop the admin listener shares (issue 16).
    if (config.maxConnections > 0) {
      main.maxConnections = config.maxConnections;
      main.on('drop', () => metrics?.connectionsDropped.inc());
    }
    const mainRequests = trackConnections(main);
    const port = await listen(main, config.port, config.host).catch((err: NodeJS.ErrnoException) => {
      throw new StartupError(`cannot listen on ${config.host}:${config.port}: ${err.code ?? err.message}`);
    });
    let admin: Server | undefined;
    let adminRequests: Connections | undefined;
    let adminPort: number | undefined;
    if (config.adminPort !== undefined) {
      admin = createAdaptorServer({ fetch: createApp(deps, 'admin').fetch }) as Server;
      answerClientErrors(admin);
      adminRequests = trackConnections(admin);
      adminPort = await listen(admin, config.adminPort, config.host).catch((err: NodeJS.ErrnoException) => {
        main.close();
        throw new StartupError(
          `cannot listen on admin port ${config.host}:${config.adminPort}: ${err.code ?? err.message}`,
        );
      });
    }
    // Never forward a cancel to ourselves (the main port is anonymous; the admin one is not meant to be).
    if (adminPort !== undefined && config.advertiseAdminPort) identity.adminPort = adminPort;
    cancelForward.setOwnListeners({ host: config.host, ports: adminPort ? [port, adminPort] : [port] });
    const advertised =
      config.advertiseHost ?? (['0.0.0.0', '::'].includes(config.host) ? hostname() : config.host);
    urls.main = `http://${advertised}:${port}`;
    urls.admin = adminPort ? `http://${advertised}:${adminPort}` : undefined;
    // Before this replica counts as live: if no other one is, the registry was
    // down and agents get a grace period to come back (DESIGN.md §4.7).
    if (
      await agents.startOutageGraceIfAlone(
        config.replicaId,
        liveWindowMs(config.replicaHeartbeatMs),
        config.outageGraceMs,
      )
    ) {
      logger.info(
        { grace_ms: config.outageGraceMs },
        'no other live replica: outage grace for agents to come back',
      );
    }
    await replicas.register();
    replicas.start();
    status.start();
    schemaGuard.start();
    const healthMonitor = new Ticker(
      config.healthCheckIntervalMs,
      () => agents.markSilentUnhealthy(),
      (err) => databaseDown(err) || logger.warn({ err }, 'health monitor failed'),
    );
    healthMonitor.start();
    sweeper.start();
    // The listening line is printed at any level but `silent`: operators and
    // the test harness read the bound port from it.
    (config.logLevel === 'silent' ? logger : logger.child({}, { level: 'info' })).info(
      {
        host: config.host,
        port,
        admin_port: adminPort,
        version: registryVersion,
        boot_id: bootId,
        schema_version: result.schemaVersion,
        // Where the admin routes are (docs/dashboard.md).
        dashboard: `${adminPort ? urls.admin : urls.main}/ui`,
        // How many tokens each role accepts (never the tokens): 0 = that role's routes are open.
        tokens: {
          admin: config.adminTokens.length,
          agent: config.agentTokens.length,
          client: config.clientTokens.length,
        },
      },
      'listening',
    );

    return {
      identity,
      port,
      adminPort,
      async shutdown(reason) {
        if (shuttingDown) return;
        shuttingDown = true;
        logger.info({ reason, timeout_ms: config.shutdownTimeoutMs }, 'shutting down');
        // No new claims (claims in flight finish), long-polls answer now, the
        // sweeper finishes its pass, in-flight requests finish (up to the
        // timeout), then the replica is marked stopped and the pool closed.
        await gate.enter('shutdown');
        // Open dashboards' streams end now, so they never hold the listeners open.
        await dashboard.stop();
        await healthMonitor.stop();
        await schemaGuard.stop();
        await signals.stop();
        await claimWaiters?.stop();
        await sweeper.stop();
        await Promise.all([
          close(main, mainRequests, config.shutdownTimeoutMs, logger, 'main'),
          admin && adminRequests
            ? close(admin, adminRequests, config.shutdownTimeoutMs, logger, 'admin')
            : undefined,
        ]);
        await status.stop();
        await replicas.stop();
        await Promise.all([
          sql.end({ timeout: 5 }),
          jobSql.end({ timeout: 5 }),
          beatSql.end({ timeout: 5 }),
          statusSql.end({ timeout: 1 }),
          dashboardSql.end({ timeout: 1 }),
        ]);
        await stopEmbedded();
        logger.info('stopped');
      },
    };
  } catch (err) {
    await stopEmbedded().catch(() => {});
    if (err instanceof SchemaError) {
      throw new StartupError(
        err.message,
        err.kind === 'breaking_migration' ? exitCodes.schemaTooNew : undefined,
      );
    }
    throw err;
  }
}

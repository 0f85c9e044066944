import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { createAdaptorServer } from '@hono/node-server';
import { SchemaError } from '@mesh/db';
import { createApp } from './app.ts';
import type { AppDeps } from './app-env.ts';
import { type Connections, close, listen, trackConnections } from './boot/connections.ts';
import { type MigrationResult, migrateSchema, openDatabase, openPools, type Pools } from './boot/database.ts';
import { appDeps, type Boot, createServices, type Services } from './boot/services.ts';
import { answerClientErrors } from './client-error.ts';
import type { RegistryConfig } from './config.ts';
import { exitCodes, StartupError } from './database.ts';
import type { Identity } from './identity.ts';
import type { Logger } from './logger.ts';
import { liveWindowMs } from './services/replicas.ts';
import { Ticker } from './services/ticker.ts';
import { registryVersion } from './version.ts';

export interface RunningRegistry {
  identity: Identity;
  port: number;
  adminPort: number | undefined;
  /** Graceful stop: no new connections, in-flight requests finish (up to the timeout), pool closed. */
  shutdown(reason: string): Promise<void>;
}

/**
 * Boots a registry, one step after the other: the database (embedded when no
 * URL is configured), its schema (migrations under the advisory lock), the
 * pools, the services, the listeners, then the background work. Throws
 * StartupError / SchemaError with a message meant for the operator. The
 * shutdown it returns undoes the steps in reverse (`shutdown` below).
 */
export async function startRegistry(config: RegistryConfig, logger: Logger): Promise<RunningRegistry> {
  const boot: Boot = { bootId: randomUUID(), startedAt: Date.now() };
  const database = await openDatabase(config, logger);
  try {
    const schema = await migrateSchema(database.url, config, logger);
    const pools = openPools(database.url, config);
    const services = await createServices(config, logger, pools, schema, boot);
    const listeners = await openListeners(config, appDeps(config, logger, pools, services), services);
    const background = await startBackground(config, logger, services);
    logListening(config, logger, boot, schema, services, listeners);
    return {
      identity: services.identity,
      port: listeners.port,
      adminPort: listeners.adminPort,
      shutdown: (reason) =>
        shutdown(reason, { config, logger, services, listeners, background, pools, database }),
    };
  } catch (err) {
    await database.stop().catch(() => {});
    if (err instanceof SchemaError) {
      throw new StartupError(
        err.message,
        err.kind === 'breaking_migration' ? exitCodes.schemaTooNew : undefined,
      );
    }
    throw err;
  }
}

interface Listeners {
  main: Server;
  mainRequests: Connections;
  port: number;
  admin?: { server: Server; requests: Connections };
  adminPort: number | undefined;
}

/**
 * The main listener and, with --admin-port, the admin one; then what depends
 * on their ports (the advertised URLs, the cancel forward's own listeners).
 */
async function openListeners(config: RegistryConfig, deps: AppDeps, services: Services): Promise<Listeners> {
  const { metrics, identity, cancelForward, urls } = services;
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
  let admin: Listeners['admin'];
  let adminPort: number | undefined;
  if (config.adminPort !== undefined) {
    const server = createAdaptorServer({ fetch: createApp(deps, 'admin').fetch }) as Server;
    answerClientErrors(server);
    admin = { server, requests: trackConnections(server) };
    adminPort = await listen(server, config.adminPort, config.host).catch((err: NodeJS.ErrnoException) => {
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
  return { main, mainRequests, port, admin, adminPort };
}

/**
 * The outage grace if no other replica is live, then this replica's fleet
 * row and the background work: fleet heartbeat, status reads, schema guard,
 * health monitor, sweeper.
 */
async function startBackground(
  config: RegistryConfig,
  logger: Logger,
  services: Services,
): Promise<{ healthMonitor: Ticker }> {
  const { agents, replicas, status, schemaGuard, sweeper, databaseDown } = services;
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
    () =>
      agents.markSilentUnhealthy({
        replicaId: config.replicaId,
        liveWindowMs: liveWindowMs(config.replicaHeartbeatMs),
      }),
    (err) => databaseDown(err) || logger.warn({ err }, 'health monitor failed'),
  );
  healthMonitor.start();
  sweeper.start();
  return { healthMonitor };
}

/**
 * The listening line, printed at any level but `silent`: operators and the
 * test harness read the bound port from it.
 */
function logListening(
  config: RegistryConfig,
  logger: Logger,
  boot: Boot,
  schema: MigrationResult,
  services: Services,
  listeners: Listeners,
): void {
  const { port, adminPort } = listeners;
  (config.logLevel === 'silent' ? logger : logger.child({}, { level: 'info' })).info(
    {
      host: config.host,
      port,
      admin_port: adminPort,
      version: registryVersion,
      boot_id: boot.bootId,
      schema_version: schema.schemaVersion,
      // Where the admin routes are (docs/dashboard.md).
      dashboard: `${adminPort ? services.urls.admin : services.urls.main}/ui`,
      // How many tokens each role accepts (never the tokens): 0 = that role's routes are open.
      tokens: {
        admin: config.adminTokens.length,
        agent: config.agentTokens.length,
        client: config.clientTokens.length,
      },
    },
    'listening',
  );
}

/**
 * The start-up in reverse. No new claims (claims in flight finish),
 * long-polls answer now, the sweeper finishes its pass, in-flight requests
 * finish (up to the timeout), then the replica is marked stopped, the pools
 * closed and the embedded PostgreSQL stopped.
 */
async function shutdown(
  reason: string,
  r: {
    config: RegistryConfig;
    logger: Logger;
    services: Services;
    listeners: Listeners;
    background: { healthMonitor: Ticker };
    pools: Pools;
    database: { stop(): Promise<void> };
  },
): Promise<void> {
  const { config, logger, services: s, listeners: l } = r;
  if (s.lifecycle.shuttingDown) return;
  s.lifecycle.shuttingDown = true;
  logger.info({ reason, timeout_ms: config.shutdownTimeoutMs }, 'shutting down');
  await s.gate.enter('shutdown');
  // Open dashboards' streams end now, so they never hold the listeners open.
  await s.dashboard.stop();
  await r.background.healthMonitor.stop();
  await s.schemaGuard.stop();
  await s.signals.stop();
  await s.claimWaiters?.stop();
  await s.sweeper.stop();
  await Promise.all([
    close(l.main, l.mainRequests, config.shutdownTimeoutMs, logger, 'main'),
    l.admin ? close(l.admin.server, l.admin.requests, config.shutdownTimeoutMs, logger, 'admin') : undefined,
  ]);
  await s.status.stop();
  await s.replicas.stop();
  await r.pools.end();
  await r.database.stop();
  logger.info('stopped');
}

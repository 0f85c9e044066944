/**
 * Start-up's first steps: the database (the embedded PostgreSQL when no URL
 * is configured), its schema (migrations under the advisory lock), and the
 * connection pools every service runs on.
 */
import { createDb, describeVersion, migrate, type Sql, startEmbeddedPostgres } from '@mesh/db';
import type { RegistryConfig } from '../config.ts';
import { StartupError, waitForDatabase } from '../database.ts';
import type { Logger } from '../logger.ts';
import { PoolUsage } from '../services/pool-usage.ts';
import { registryVersion } from '../version.ts';

export interface OpenDatabase {
  url: string;
  /** Stops the embedded PostgreSQL this process started (nothing for a DATABASE_URL). */
  stop(): Promise<void>;
}

/** The configured database, or the embedded PostgreSQL in `--data-dir` when none is. */
export async function openDatabase(config: RegistryConfig, logger: Logger): Promise<OpenDatabase> {
  if (config.databaseUrl) return { url: config.databaseUrl, stop: async () => {} };
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
  return { url: embedded.url, stop: embedded.stop };
}

export type MigrationResult = Awaited<ReturnType<typeof migrate>>;

/** Waits for PostgreSQL (up to --db-connect-timeout), then migrates under the advisory lock. */
export async function migrateSchema(
  url: string,
  config: RegistryConfig,
  logger: Logger,
): Promise<MigrationResult> {
  await waitForDatabase(url, config.dbConnectTimeoutMs, (why) =>
    logger.warn({ reason: why }, 'PostgreSQL not reachable yet; retrying'),
  );
  const result = await migrate(url, {
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
  return result;
}

/** The registry's connections, each pool with its purpose. */
export interface Pools {
  /** Requests and background work; durable commits. */
  sql: Sql;
  /** The shared claim and completion statements. */
  jobSql: Sql;
  /** Heartbeat timestamps only (synchronous_commit off). */
  beatSql: Sql;
  /** The status monitor's own connection. */
  statusSql: Sql;
  /** The dashboard feed's own connection (opened at the first dashboard). */
  dashboardSql: Sql;
  /** Each pool's use, for /metrics. */
  usage: { main: PoolUsage; jobs: PoolUsage; status: PoolUsage; heartbeats: PoolUsage };
  /** Closes every pool (at shutdown, after the listeners). */
  end(): Promise<void>;
}

export function openPools(url: string, config: RegistryConfig): Pools {
  // A statement the server takes longer on than --db-statement-timeout is
  // cancelled by PostgreSQL itself (57014 → 503): the slow-database bound.
  const statementTimeout: Record<string, string> =
    config.dbStatementTimeoutMs > 0 ? { statement_timeout: String(config.dbStatementTimeoutMs) } : {};
  // Each pool counted by a wrapper (postgres.js exposes no pool counters): /metrics.
  const usage = {
    main: new PoolUsage(config.dbPoolSize),
    jobs: new PoolUsage(config.dbJobPoolSize),
    status: new PoolUsage(1),
    heartbeats: new PoolUsage(2),
  };
  const sql = usage.main.wrap(
    createDb(url, {
      max: config.dbPoolSize,
      applicationName: `mesh-registry:${config.replicaId}`,
      settings: statementTimeout,
    }).sql,
  );
  // The shared claim and completion statements (a few at a time, services/job-claims.ts and job-deltas.ts)
  // keep connections of their own: the pool hands out its least recently used
  // connection, so on the pool they would run on a different, cold backend each
  // time (measured: PostgreSQL CPU per job about a fifth higher, docs/benchmarks.md).
  const jobSql = usage.jobs.wrap(
    createDb(url, {
      max: config.dbJobPoolSize,
      applicationName: `mesh-registry:${config.replicaId}:jobs`,
      settings: statementTimeout,
    }).sql,
  );
  // Heartbeat timestamps only (services/heartbeats.ts): their commits need no
  // WAL flush, so these connections set synchronous_commit off. Never job
  // state, status or topology: those go through `sql`, durably.
  const beatSql = usage.heartbeats.wrap(
    createDb(url, {
      max: 2,
      applicationName: `mesh-registry:${config.replicaId}:heartbeats`,
      settings: { synchronous_commit: 'off' },
    }).sql,
  );
  // Its own connection, short connect timeout: an outage shows within a second or two.
  const statusSql = usage.status.wrap(
    createDb(url, {
      max: 1,
      connectTimeoutSeconds: 2,
      applicationName: `mesh-registry:${config.replicaId}:status`,
    }).sql,
  );
  // Its own connection (opened at the first dashboard): one read per tick
  // feeds every open dashboard (docs/dashboard.md).
  const { sql: dashboardSql } = createDb(url, {
    max: 1,
    connectTimeoutSeconds: 2,
    applicationName: `mesh-registry:${config.replicaId}:dashboard`,
  });
  return {
    sql,
    jobSql,
    beatSql,
    statusSql,
    dashboardSql,
    usage,
    async end() {
      await Promise.all([
        sql.end({ timeout: 5 }),
        jobSql.end({ timeout: 5 }),
        beatSql.end({ timeout: 5 }),
        statusSql.end({ timeout: 1 }),
        dashboardSql.end({ timeout: 1 }),
      ]);
    },
  };
}

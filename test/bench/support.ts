/**
 * What the benchmarks start around their workloads: one durable PostgreSQL
 * server, and on a fresh database of it our registry or the MCP Mesh registry
 * 3.7.1, each stopped with its database.
 */
import {
  createDatabase,
  type RegistryProcess,
  spawnRegistry,
  startMcpRegistry,
  startTestPostgres,
  type TestDatabase,
  type TestPostgres,
  withDatabase,
} from '@mesh/testkit';
import postgres from 'postgres';
import { findPostmaster } from './proc.ts';

export type BenchPostgres = TestPostgres & { postmaster: number };

/**
 * A durable PostgreSQL server (fsync on, PostgreSQL's defaults), and its
 * postmaster's pid for the CPU accounting of proc.ts (-1 when it is not on
 * this machine's /proc). Prints which server it is.
 */
export async function startBenchPostgres(): Promise<BenchPostgres> {
  const pg = await startTestPostgres(undefined, { durable: true });
  console.log(`PostgreSQL: ${pg.source}, ${pg.serverVersion}, durable (fsync on)`);
  return Object.assign(pg, { postmaster: await findPostmaster(pg.adminUrl) });
}

export interface OursOptions {
  /** `bench` unless told. */
  replicaId?: string;
  /** On top of `MESH_LOG_LEVEL=warn`. */
  env?: Record<string, string>;
  /** Flags for node itself (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
}

/** Our registry on a database, logging warnings only. */
export function spawnOurs(databaseUrl: string, options: OursOptions = {}): Promise<RegistryProcess> {
  return spawnRegistry({
    databaseUrl,
    replicaId: options.replicaId ?? 'bench',
    env: { MESH_LOG_LEVEL: 'warn', ...options.env },
    nodeArgs: options.nodeArgs,
  });
}

/** A registry under a benchmark: where it answers, the pid whose CPU counts, its database. */
export interface BenchRegistry {
  url: string;
  pid: number;
  db: TestDatabase;
  /** Stops the registry, then drops its database. */
  stop(): Promise<void>;
}

/** Our registry on a fresh database of the server (the registry migrates it). */
export async function startOurs(adminUrl: string, options: OursOptions = {}): Promise<BenchRegistry> {
  const db = await createDatabase(adminUrl, { migrated: false });
  const reg = await spawnOurs(db.url, options);
  return { url: reg.url, pid: reg.pid, db, stop: () => stopBoth(reg, db) };
}

/** The MCP Mesh registry 3.7.1 on a fresh database of the server (it sets its tables up itself). */
export async function startTheirs(adminUrl: string): Promise<BenchRegistry> {
  const db = await createDatabase(adminUrl, { migrated: false });
  const mcp = await startMcpRegistry(withDatabase(adminUrl, db.name));
  return { url: mcp.url, pid: mcp.child.pid ?? -1, db, stop: () => stopBoth(mcp, db) };
}

async function stopBoth(registry: { stop(): Promise<unknown> }, db: TestDatabase): Promise<void> {
  await registry.stop();
  await db.drop();
}

/**
 * A fresh database our registry has migrated (started once, then stopped):
 * for runs that fill the tables before a registry serves them, or that run
 * the registry's statements without it.
 */
export async function migratedByOurs(adminUrl: string, replicaId?: string): Promise<TestDatabase> {
  const db = await createDatabase(adminUrl, { migrated: false });
  const first = await spawnOurs(db.url, { replicaId });
  await first.stop();
  return db;
}

/** Runs SQL text on a connection of its own: the experiments' hooks (BENCH_SETUP_SQL and the like). */
export async function runSql(url: string, text: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  await sql.unsafe(text);
  await sql.end();
}

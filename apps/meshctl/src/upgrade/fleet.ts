import { type AppliedMigration, appliedMigrations } from '@mesh/db';
import type { ReplicaInfo } from '@mesh/protocol';
import type { GlobalArgs } from '../cli/connection.ts';
import type { Context } from '../cli/context.ts';
import { fetchFleet } from '../cli/fleet.ts';
import { type Database, type DatabaseArgs, databaseUrlFrom, openDatabase, redactUrl } from '../db/connect.ts';
import { liveWindowSeconds, replicasFromDatabase } from '../db/replicas.ts';
import { oldestRelease } from './compat.ts';

/** What `upgrade check` and `upgrade verify` know of the running mesh. */
export interface Fleet {
  /** Where the replica list came from. */
  source: 'registry' | 'database';
  registryUrl: string | null;
  databaseUrl: string | null;
  /** Every replica recorded (live, stale and stopped). */
  replicas: ReplicaInfo[];
  fleetDraining: boolean;
  /** The migration ledger, with each migration's declaration; null without a database. */
  applied: AppliedMigration[] | null;
  agents: AgentVersions | null;
  /** Open when a database was given; the caller closes it. */
  db: Database | undefined;
  /** The registry's `/health` (its clock, for the job checks through the API). */
  health: { timestamp: string | undefined; at: number } | undefined;
}

/** The SDK versions healthy agents report. */
export interface AgentVersions {
  healthy: number;
  /** Healthy agents that report no SDK version (older SDKs, raw 3.7 clients). */
  legacy: number;
  oldest_sdk: string | null;
  sdk_versions: string[];
}

export type UpgradeArgs = GlobalArgs & DatabaseArgs;

/** True when the operator named a registry (flags or environment), not just the localhost default. */
function registryNamed(args: GlobalArgs, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(
    args['registry-url'] ||
      args['registry-host'] ||
      args['registry-port'] !== undefined ||
      args['admin-url'] ||
      env.MESH_REGISTRY_URL ||
      env.MESH_ADMIN_URL ||
      env.MCP_MESH_REGISTRY_HOST ||
      env.MCP_MESH_REGISTRY_PORT,
  );
}

async function agentsFromDatabase(db: Database): Promise<AgentVersions> {
  const rows = await db.sql<{ sdk_version: string | null; n: number }[]>`
    select sdk_version, count(*)::int as n from agents where status = 'healthy' group by sdk_version`;
  return summarise(rows);
}

async function agentsFromApi(ctx: Context): Promise<AgentVersions | null> {
  const res = await ctx.registry().get('/agents');
  if (res.status !== 200) return null;
  const agents =
    res.json<{ agents: { status: string; sdk_version?: string | null }[] | null }>().agents ?? [];
  const counts = new Map<string | null, number>();
  for (const a of agents.filter((x) => x.status === 'healthy'))
    counts.set(a.sdk_version ?? null, (counts.get(a.sdk_version ?? null) ?? 0) + 1);
  return summarise([...counts].map(([sdk_version, n]) => ({ sdk_version, n })));
}

function summarise(rows: { sdk_version: string | null; n: number }[]): AgentVersions {
  const versions = rows.flatMap((r) => (r.sdk_version ? [r.sdk_version] : []));
  return {
    healthy: rows.reduce((a, r) => a + r.n, 0),
    legacy: rows.filter((r) => !r.sdk_version).reduce((a, r) => a + r.n, 0),
    oldest_sdk: oldestRelease(versions),
    sdk_versions: [...new Set(versions)].sort(),
  };
}

/**
 * Reads the fleet: the replicas from the registry's `GET /admin/replicas` when
 * a registry is named (or no database is given: then localhost:8000, as every
 * command), else from `registry_replicas` (live = heard from within
 * {@link liveWindowSeconds}); the ledger and the agents' SDK versions from the
 * database when one is given, else the agents from `GET /agents`. A registry
 * or database that cannot be reached is a ConnectionError (exit 2).
 */
export async function readFleet(args: UpgradeArgs, ctx: Context): Promise<Fleet> {
  const databaseUrl = databaseUrlFrom(args);
  const useRegistry = registryNamed(args) || !databaseUrl;
  const db = databaseUrl
    ? await openDatabase(databaseUrl, { timeoutSeconds: Math.min(args.timeout ?? 30, 10) })
    : undefined;
  try {
    const fleet: Fleet = {
      source: useRegistry ? 'registry' : 'database',
      registryUrl: null,
      databaseUrl: databaseUrl ? redactUrl(databaseUrl) : null,
      replicas: [],
      fleetDraining: false,
      applied: null,
      agents: null,
      db,
      health: undefined,
    };
    if (useRegistry) {
      const http = ctx.registry();
      const at = Date.now();
      const health = await http.get('/health');
      if (health.status === 200)
        fleet.health = { timestamp: health.json<{ timestamp?: string }>().timestamp, at };
      const body = await fetchFleet(http);
      fleet.registryUrl = http.url;
      fleet.replicas = body.replicas;
      fleet.fleetDraining = body.fleet_draining;
    }
    if (db) {
      fleet.applied = await appliedMigrations(db.sql);
      if (!useRegistry) {
        fleet.replicas = await replicasFromDatabase(db.sql);
        const [row] = await db.sql<{ on: boolean }[]>`
          select exists (select 1 from registry_settings where key = 'fleet_drain') as on`.catch(() => []);
        fleet.fleetDraining = Boolean(row?.on);
      }
      fleet.agents = fleet.applied.length > 0 ? await agentsFromDatabase(db) : null;
    } else {
      fleet.agents = await agentsFromApi(ctx);
    }
    return fleet;
  } catch (err) {
    await db?.close();
    throw err;
  }
}

export const liveReplicas = (f: Fleet) => f.replicas.filter((r) => r.live);
export const fleetSourceText = (f: Fleet) =>
  f.source === 'registry'
    ? `the registry's GET /admin/replicas (${f.registryUrl})`
    : `registry_replicas in the database (live: heard from in the last ${liveWindowSeconds} s)`;

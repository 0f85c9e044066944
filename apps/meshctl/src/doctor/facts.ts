// What the doctor learns before judging: the registry's /health and /ready,
// the fleet list, the database and its migration ledger, read once (the
// registry and the database side by side) and shared by every check.

import { type SchemaStatus, schemaStatus } from '@mesh/db';
import { features as featureNames, type ReplicasResponse } from '@mesh/protocol';
import { CliError } from '../cli/errors.ts';
import type { RegistryHttp } from '../cli/http.ts';
import { type Database, describeDbError } from '../db/connect.ts';

export interface HealthBody {
  version?: string;
  timestamp?: string;
  replica_id?: string;
  boot_id?: string;
  schema_version?: number;
  features?: string[];
}

interface ReadyBody {
  status: string;
  checks?: { database?: string; migrations?: string; lifecycle?: string; schema?: string; reason?: string };
}

export interface DoctorOptions {
  http: RegistryHttp;
  /** Set when --database-url / DATABASE_URL was given. */
  databaseUrl: string | undefined;
  openDatabase(url: string): Promise<Database>;
  sweepIntervalMs: number;
  maxClockSkewMs: number;
  /** Connection flags to append to printed meshctl commands (` --registry-url …`). */
  connectionFlags: string;
}

/** What the doctor learnt before judging. */
export interface Facts {
  url: string;
  health: { body: HealthBody; at: number } | undefined;
  healthError: string | undefined;
  ready: ReadyBody | undefined;
  ours: boolean;
  fleet: ReplicasResponse | undefined;
  /** Why there is no fleet list (a skip reason). */
  fleetMissing: string;
  db: Database | undefined;
  dbError: string | undefined;
  schema: SchemaStatus | undefined;
  serverVersion: string | undefined;
}

export const lacksSchemaVersioning =
  'skipped: the registry lacks schema versioning (MCP Mesh 3.7?): its database is not ours to judge';

/** A registry that answered but is not a mesh-registry (MCP Mesh 3.7): its database has other tables. */
export const foreignRegistry = (f: Facts) => Boolean(f.health) && !f.ours;
export const live = (f: ReplicasResponse) => f.replicas.filter((r) => r.live);

/** Reads the registry and the database at the same time; what fails is recorded, never thrown. */
export async function gather(o: DoctorOptions): Promise<Facts> {
  const facts: Facts = {
    url: o.http.url,
    health: undefined,
    healthError: undefined,
    ready: undefined,
    ours: false,
    fleet: undefined,
    fleetMissing: 'skipped: the registry is unreachable',
    db: undefined,
    dbError: undefined,
    schema: undefined,
    serverVersion: undefined,
  };
  await Promise.all([gatherRegistry(o, facts), gatherDatabase(o, facts)]);
  return facts;
}

/** /health, /ready (a mesh-registry's only) and the fleet list, or why each is missing. */
async function gatherRegistry(o: DoctorOptions, facts: Facts): Promise<void> {
  try {
    const res = await o.http.get('/health');
    facts.url = o.http.url;
    if (res.status !== 200) {
      facts.healthError = `GET /health answered ${res.status}: ${res.text.trim().slice(0, 200)}`;
      return;
    }
    facts.health = { body: res.json<HealthBody>(), at: Date.now() };
  } catch (err) {
    facts.healthError = (err as Error).message;
    return;
  }
  const feats = facts.health.body.features;
  facts.ours = Array.isArray(feats) && feats.includes(featureNames.replicaIdentity);
  if (facts.ours) {
    const ready = await o.http.get('/ready').catch(() => undefined);
    if (ready && (ready.status === 200 || ready.status === 503)) {
      try {
        facts.ready = ready.json<ReadyBody>();
      } catch {
        // not JSON: treated as no readiness information
      }
    }
  }
  const res = await o.http.get('/admin/replicas', { admin: true }).catch((err: Error) => err);
  if (res instanceof Error) facts.fleetMissing = `skipped: GET /admin/replicas failed: ${res.message}`;
  else if (res.status === 200) {
    try {
      facts.fleet = res.json<ReplicasResponse>();
    } catch (err) {
      facts.fleetMissing = `skipped: ${(err as Error).message}`;
    }
  } else if (res.status === 401)
    facts.fleetMissing =
      'skipped: GET /admin/replicas needs an admin token (--admin-token or MESH_ADMIN_TOKEN)';
  else if (!facts.ours)
    facts.fleetMissing = 'skipped: the registry lacks replica discovery, GET /admin/replicas (MCP Mesh 3.7?)';
  else if (res.status === 404)
    facts.fleetMissing =
      'skipped: GET /admin/replicas answered 404: the admin routes are on a separate port; pass --admin-url';
  else facts.fleetMissing = `skipped: GET /admin/replicas answered ${res.status}`;
}

/** With --database-url: the connection, PostgreSQL's version and the migration ledger. */
async function gatherDatabase(o: DoctorOptions, facts: Facts): Promise<void> {
  if (!o.databaseUrl) return;
  try {
    facts.db = await o.openDatabase(o.databaseUrl);
  } catch (err) {
    facts.dbError = err instanceof CliError ? err.message : describeDbError(err);
    return;
  }
  try {
    const [row] = await facts.db.sql<{ v: string }[]>`select current_setting('server_version') as v`;
    facts.serverVersion = row?.v;
    facts.schema = await schemaStatus(facts.db.sql);
  } catch (err) {
    facts.dbError = `reading the migration ledger failed: ${describeDbError(err)}`;
  }
}

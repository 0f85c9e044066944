/**
 * `GET|POST|DELETE /admin/drain`. `draining` and `live_claims` are MCP Mesh
 * 3.7's body (what its meshctl decodes); the rest is ours, absent on 3.7.
 */
export interface DrainStatus {
  draining: boolean;
  /** Live claims database-wide (3.7's meaning). */
  live_claims: number;
  live_claims_this_replica?: number;
  replica_id?: string;
  boot_id?: string;
  version?: string;
  draining_since?: string | null;
  fleet_draining?: boolean;
}

/** A row of `GET /admin/replicas` (ours): a registry process as recorded in the database. */
export interface ReplicaInfo {
  replica_id: string;
  boot_id: string;
  version: string;
  schema_version: number;
  main_url: string | null;
  admin_url: string | null;
  started_at: string;
  last_seen_at: string;
  draining: boolean;
  draining_since: string | null;
  stopped_at: string | null;
  /** Not seen for three heartbeat intervals and not stopped: probably dead. */
  stale: boolean;
  /** Running and heard from recently. */
  live: boolean;
}

/** `GET /admin/replicas` (ours). */
export interface ReplicasResponse {
  replicas: ReplicaInfo[];
  fleet_draining: boolean;
  fleet_draining_since: string | null;
}

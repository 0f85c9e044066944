import type { ReplicaInfo } from './admin.ts';
import type { AgentInfo } from './agents.ts';
import type { JobStatus } from './jobs.ts';

/**
 * The operator dashboard's wire (ours): `GET /ui/api/stream` sends one
 * `snapshot` event per tick, built once by the serving replica and written to
 * every open dashboard, so the database cost does not grow with dashboards.
 */

/** A replica as the dashboard shows it. */
export interface DashboardReplica extends ReplicaInfo {
  state: 'live' | 'stale' | 'stopped';
  /** Live claims handed out by this replica (`claimed_by_replica`). */
  live_claims: number;
  /** Whether the database's applied migrations let this replica's release run (see `meshctl db status`). */
  schema_verdict: 'compatible' | 'incompatible';
  /** The breaking migration and why, when incompatible. */
  schema_reason?: string;
}

/** A row of the live job list (payloads and results only in the detail). */
export interface DashboardJob {
  job_id: string;
  capability: string;
  status: JobStatus;
  owner_instance_id: string | null;
  claimed_by_replica: string | null;
  attempt_count: number;
  max_retries: number;
  progress: number | null;
  submitted_by: string;
  /** Unix milliseconds (database clock). */
  submitted_at: number;
  /** Unix microseconds, exact (decimal string): the keyset cursor of the next page starts after it. */
  submitted_us: string;
}

/** One second of fleet throughput. */
export interface ThroughputPoint {
  /** Unix milliseconds. */
  t: number;
  /** Claims per second over the fleet (sum of the live replicas' `mesh_claims_total{outcome="claimed"}`); null when unknown. */
  claims: number | null;
  /** Completions per second over the fleet (`mesh_jobs_finished_total`); null when unknown. */
  completions: number | null;
  /** Claimable jobs waiting, every capability. */
  queue: number;
}

export interface DashboardSnapshot {
  /** When the serving replica read it (its clock, ISO). */
  at: string;
  served_by: { replica_id: string; boot_id: string; version: string; schema_version: number };
  database: 'up' | 'unreachable';
  fleet_drain: { draining: boolean; since: string | null };
  /** Live claims database-wide. */
  live_claims: number;
  replicas: DashboardReplica[];
  queue: { capability: string; depth: number; oldest_age_seconds: number }[];
  /** Oldest first, the last few minutes. */
  throughput: ThroughputPoint[];
  jobs: {
    /** Counts by status and capability, read every few seconds (`counts_at`). */
    counts: { status: JobStatus; capability: string; n: number }[];
    counts_at: string | null;
    /** The newest jobs, newest first: the list's first page without filters. */
    recent: DashboardJob[];
  };
  agents: { list: AgentInfo[]; truncated: boolean; read_at: string | null };
  schema: {
    /** Highest applied migration index + 1. */
    database_version: number;
    migrations: {
      name: string;
      compatibility: 'compatible' | 'breaking' | null;
      release: string | null;
      oldest_compatible: string | null;
    }[];
  };
}

/** `GET /ui/api/replicas/:id/drain`, `POST`, `DELETE`: the target replica's `/admin/drain` answer, proxied. */
export interface DashboardDrainAnswer {
  status: number;
  body: unknown;
}

/**
 * The registry's settings as one value (what `loadConfig` in config.ts
 * returns), in a module that imports nothing of ours, so that the option
 * table, the logger and the services can name it without an import cycle.
 */

export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

/**
 * Where cancels may be forwarded: `any` address (but never this registry's own
 * listeners), only addresses inside `cidrs`, or nowhere (`off`).
 */
export type ForwardPolicy = { kind: 'any' } | { kind: 'off' } | { kind: 'cidrs'; cidrs: string[] };

/** The registry's validated configuration. */
export interface RegistryConfig {
  /** PostgreSQL URL; undefined = start the embedded PostgreSQL in `dataDir`. */
  databaseUrl: string | undefined;
  host: string;
  port: number;
  /** Separate admin listener; undefined = admin routes on the main port (3.7 behaviour). */
  adminPort: number | undefined;
  replicaId: string;
  logLevel: LogLevel;
  logFormat: 'json' | 'pretty';
  dataDir: string;
  dbPoolSize: number;
  /** Connections of the shared claim and completion statements, apart from the pool. */
  dbJobPoolSize: number;
  dbConnectTimeoutMs: number;
  /** Longest a main-port request waits on the database before answering 503 (plus a long-poll's own wait); 0 = off. */
  dbRequestTimeoutMs: number;
  /** PostgreSQL statement_timeout of the request pools; 0 = off. */
  dbStatementTimeoutMs: number;
  /** Requests of one route class served at once (claim, submit, owner, read). */
  maxInFlight: number;
  /** Requests of one route class waiting for a slot before being shed (503 overloaded). */
  maxQueued: number;
  /** Longest a request waits for a slot before being shed. */
  maxQueueWaitMs: number;
  /** Long-polls (job signals, event reads with wait) held at once. */
  maxLongPolls: number;
  /** Open connections on the main port; 0 = no bound. */
  maxConnections: number;
  migrationLockTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** Lease window of a job without max_duration. */
  defaultLeaseMs: number;
  sweepIntervalMs: number;
  /** Opt-in ceiling on a deadline-less job's total runtime; 0 = off. */
  staleTimeoutMs: number;
  /** Events of a terminal job are deleted this long after it finished; 0 = keep. */
  eventRetentionMs: number;
  /** Terminal jobs are deleted this long after they finished; 0 = keep. */
  jobRetentionMs: number;
  /** Refuse epoch-less owner writes (once every agent sends claim epochs). */
  requireClaimEpoch: boolean;
  /** Say the admin listener's port in `/health` (meshctl finds the admin URL from it). */
  advertiseAdminPort: boolean;
  /** Serve `wait_ms` on `POST /jobs/claim` (feature `long-poll-claim`). */
  longPollClaim: boolean;
  /** POST /jobs/batch honours `claim` (feature claim-beside-deltas). */
  claimBesideDeltas: boolean;
  maxBodyBytes: number;
  /** When any is set, admin routes, force reclaim and GET /jobs require one of these bearer tokens. */
  adminTokens: string[];
  /** Admin tokens read from --admin-token-file (merged into adminTokens). */
  adminTokenFile: string[];
  /** When any is set, the agents' routes of the main port require one (tokens.ts). */
  agentTokens: string[];
  agentTokenFile: string[];
  /** When any is set, the clients' routes of the main port require one (tokens.ts). */
  clientTokens: string[];
  clientTokenFile: string[];
  /** Host other replicas and meshctl use to reach this one (recorded in the fleet table). */
  advertiseHost: string | undefined;
  /** Names the admin routes answer to besides IPs, localhost, the hostname and advertiseHost (admin-origin.ts). */
  adminHosts: string[];
  /** How often this replica records itself (and reads the fleet drain). */
  replicaHeartbeatMs: number;
  /** How often the health monitor looks for silent agents. */
  healthCheckIntervalMs: number;
  /** Silence after which an agent turns unhealthy. */
  agentTimeoutMs: number;
  /** After a whole-registry outage, how long agents get before any sweep may take their jobs. */
  outageGraceMs: number;
  /** Where cancels may be forwarded to owner agents: anywhere but this registry, some CIDRs, or nowhere. */
  cancelForward: ForwardPolicy;
}

/**
 * The app's dependency and environment types: what every route reads with
 * `c.get('deps')` and the request variables. A module of its own (as unkey
 * keeps its Hono env), so that routes and middleware name them without
 * importing the app that mounts them (no import cycle).
 */
import type { Feature } from '@mesh/protocol';
import type { Identity, Readiness } from './identity.ts';
import type { Logger } from './logger.ts';
import type { Admission } from './services/admission.ts';
import type { AgentStore } from './services/agents.ts';
import type { CancelForwarder } from './services/cancel-forward.ts';
import type { ClaimWaiters } from './services/claim-waiters.ts';
import type { DashboardFeed } from './services/dashboard-feed.ts';
import type { DrainGate } from './services/drain.ts';
import type { JobSignals } from './services/job-signals.ts';
import type { JobStore } from './services/jobs.ts';
import type { Metrics } from './services/metrics.ts';
import type { ReplicaRegistry } from './services/replicas.ts';
import type { SchemaGuard } from './services/schema-guard.ts';
import type { StatusMonitor } from './services/status.ts';
import type { TokenSets } from './tokens.ts';

/** Services injected into every route: `c.get('deps')` (`c.var` would copy every variable at each read). */
export interface AppDeps {
  identity: Identity;
  readiness: Readiness;
  features: readonly Feature[];
  logger: Logger;
  jobs: JobStore;
  agents: AgentStore;
  signals: JobSignals;
  gate: DrainGate;
  /** Long-poll claims (`wait_ms`); absent when the feature is off: claims answer at once. */
  claimWaiters?: ClaimWaiters;
  /** Tells an owner agent about a cancel, within the operator's bounds. */
  cancelForward: CancelForwarder;
  /** This replica's row in the fleet; absent in single-process tests. */
  replicas?: ReplicaRegistry;
  /** Watches for breaking migrations applied under this replica; absent in single-process tests. */
  schemaGuard?: Pick<SchemaGuard, 'incompatible'>;
  metrics?: Metrics;
  /**
   * Background-read fleet values and the database's up/down state: operator
   * routes answer from it during an outage; absent in single-process tests.
   */
  status?: StatusMonitor;
  /** The dashboard's one reader of the fleet, shared by every open dashboard; absent in single-process tests. */
  dashboard?: DashboardFeed;
  /**
   * Bearer tokens by role (tokens.ts): with admin tokens, admin routes, force
   * reclaim and GET /jobs require one; with agent or client tokens, the main
   * port's routes of that role do (access.ts). Absent or empty = open, as 3.7.
   */
  tokens?: Partial<TokenSets>;
  /** Largest accepted request body, in bytes. */
  maxBodyBytes?: number;
  /** Bounded capacity per route class (services/admission.ts); absent = unbounded. */
  admission?: Admission;
  /**
   * Longest a main-port request waits on the database before it answers 503
   * (a long-poll's own wait comes on top); absent or 0 = unbounded.
   */
  dbRequestTimeoutMs?: number;
  /**
   * Host names the admin routes answer to besides IP addresses and localhost
   * (admin-origin.ts: the hostname, the advertise host, --admin-hosts).
   */
  adminHosts?: readonly (string | undefined)[];
}

export interface AppEnv {
  Variables: {
    deps: AppDeps;
    requestId: string;
    /** The request's admission slot (services/admission.ts), when admission is on. */
    slot?: { toLongPoll(waitMs: number): void };
    /**
     * Set when the database bound has already answered the request 503 while
     * its handler runs on: an outcome it reaches later reaches no one (a claim
     * gives its jobs back, routes/jobs.ts `claimAnswer`).
     */
    answered?: 'timed_out';
  };
}

/**
 * Which routes an app serves: everything (no admin port configured, the 3.7
 * layout), the main port's share, or the admin port's (drain, fleet, reclaim).
 */
export type Surface = 'all' | 'main' | 'admin';

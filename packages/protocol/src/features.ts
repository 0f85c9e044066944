/**
 * Features a registry advertises in `/health` → `features`. Clients use them to
 * decide which extensions they may use; a registry that lists none (MCP Mesh
 * 3.7.1) gets the 3.7 wire only. Later releases append, never rename.
 */
export const features = {
  /** `/health` carries `replica_id` and `boot_id`; `/ready` exists. */
  replicaIdentity: 'replica-identity',
  /** Schema migrations are versioned and checked at boot. */
  schemaVersioning: 'schema-versioning',
  /** `POST /jobs/{id}/release` accepts `claim_epoch` and is fenced by it. */
  fencedRelease: 'fenced-release',
  /** `POST /jobs/claim` accepts `max_jobs`. */
  batchClaim: 'batch-claim',
  /** `POST /jobs/leases` renews many leases in one call. */
  leaseRenewal: 'lease-renewal',
  /** `result` may be any JSON value, not only an object. */
  anyJsonResult: 'any-json-result',
  /** Deadline expiry and staleness write an event a parked handler sees at once. */
  deadlineEvents: 'deadline-events',
  /**
   * `POST /jobs` honours `Idempotency-Key`: a retried submission answers the
   * job the first one created, so clients may retry it.
   */
  idempotentSubmit: 'idempotent-submit',
  /**
   * `POST /jobs/signals` (since 0.2.0): one long-poll per agent instance that
   * answers as soon as one of the claims it names is cancelled, re-claimed
   * (force reclaim, lease expiry, orphan sweep) or otherwise ended, on any replica.
   */
  jobSignals: 'job-signals',
  /**
   * `POST /jobs/claim` accepts `wait_ms` (since 0.2.0): with nothing claimable
   * the claim parks until work for its capability is queued on any replica
   * (submit, release, reclaim, lease or orphan sweep), then claims, or answers
   * empty when the wait ends. A draining or stopping replica answers parked
   * claims empty at once, with `X-Mesh-Draining: true`.
   */
  longPollClaim: 'long-poll-claim',
  /**
   * `POST /jobs/batch` accepts `claim` (since 0.2.0): beside the deltas, the
   * same instance claims up to `max_jobs` jobs of a capability (through the
   * drain barrier, like `POST /jobs/claim` without a wait), answered in
   * `claimed`: a worker's outcome and its next claim share one exchange.
   */
  claimBesideDeltas: 'claim-beside-deltas',
} as const;

export type Feature = (typeof features)[keyof typeof features];

/** Header names, written once. The first four are MCP Mesh 3.7 names. */
export const headers = {
  pendingJobs: 'X-Mesh-Pending-Jobs',
  healthStatus: 'X-Health-Status',
  serviceVersion: 'X-Service-Version',
  uptimeSeconds: 'X-Uptime-Seconds',
  /** Ours: identity of the answering replica. */
  replicaId: 'X-Mesh-Replica-Id',
  bootId: 'X-Mesh-Boot-Id',
  /** Ours: identity headers sent by newer SDKs (absence = legacy client). */
  instanceId: 'X-Mesh-Instance-Id',
  claimEpoch: 'X-Mesh-Claim-Epoch',
  sdkVersion: 'X-Mesh-Sdk-Version',
  /**
   * Ours since 0.2.0: on a claim answer, this replica is draining (it hands out
   * no claims). A client with several registry URLs claims at the next one.
   */
  draining: 'X-Mesh-Draining',
  requestId: 'X-Request-Id',
  /**
   * Ours since 0.2.0, on `POST /jobs`: the IETF draft's header
   * (draft-ietf-httpapi-idempotency-key-header). The same key within the
   * job's retention answers the job first created; older registries ignore it.
   */
  idempotencyKey: 'Idempotency-Key',
  /** Ours since 0.2.0: on a `POST /jobs` answer, the key named an existing job (`true`). */
  idempotentReplayed: 'Idempotent-Replayed',
} as const;

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
  requestId: 'X-Request-Id',
} as const;

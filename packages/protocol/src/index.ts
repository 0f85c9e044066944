export type { DrainStatus, ReplicaInfo, ReplicasResponse } from './admin.ts';
export * from './agents.ts';
export type {
  DashboardDrainAnswer,
  DashboardJob,
  DashboardReplica,
  DashboardSnapshot,
  ThroughputPoint,
} from './dashboard.ts';
export type { ErrorBody, ErrorCode } from './errors.ts';
export { errorBodySchema, errorCodes, errorStatus } from './errors.ts';
export type { Feature } from './features.ts';
export { features } from './features.ts';
export { headers } from './headers.ts';
export type { Health, Ready, Root } from './health.ts';
export { healthSchema, readySchema, rootSchema, serviceName } from './health.ts';
export { formatIdempotencyKey, parseIdempotencyKey } from './idempotency.ts';
export * from './jobs.ts';
export { limits } from './limits.ts';
export { apiVersion } from './version.ts';

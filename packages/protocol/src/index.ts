export type { ErrorBody, ErrorCode } from './errors.ts';
export { errorBodySchema, errorCodes, errorStatus } from './errors.ts';
export type { Feature } from './features.ts';
export { features } from './features.ts';
export { headers } from './headers.ts';
export type { Health, Ready, Root } from './health.ts';
export { healthSchema, readySchema, rootSchema, serviceName } from './health.ts';
export * from './jobs.ts';
export { apiVersion } from './version.ts';

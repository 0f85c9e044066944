export type { RegistryClientOptions, RegistryInfo } from './client.ts';
export { RegistryClient, RegistryError } from './client.ts';
export { sdkVersion } from './version.ts';
export type { JobContext, JobHandler, JobWorkerOptions } from './worker.ts';
export { JobWorker, waitForJob } from './worker.ts';

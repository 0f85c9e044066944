export type { AgentEvents, AgentOptions, RegistrationReason } from './agent.ts';
export { Agent, RegistrationRefusedError } from './agent.ts';
export { inputEventType, RegistryClient } from './client.ts';
export type { RegistryClientOptions, RegistryInfo, RequestOptions, SubmitOptions } from './client-options.ts';
export { RegistryError, RegistryUnreachableError } from './errors.ts';
export type {
  InferOutput,
  StandardSchemaIssue,
  StandardSchemaResult,
  StandardSchemaV1,
} from './input-schema.ts';
export { InputValidationError, inputRejectedEventType } from './input-schema.ts';
export type {
  JobContext,
  JobHandler,
  RequestInputOptions,
  WaitForEventOptions,
  WorkerNotice,
  WriteKind,
} from './job-context.ts';
export type { JobAbortReason } from './job-errors.ts';
export { JobAbortedError, NonRetryableError, RetryableError, retryUnlessNonRetryable } from './job-errors.ts';
export { sdkVersion } from './version.ts';
export type { WaitForJobOptions } from './wait-for-job.ts';
export { JobWaitTimeoutError, waitForJob } from './wait-for-job.ts';
export type { JobWorkerOptions } from './worker.ts';
export { JobWorker } from './worker.ts';

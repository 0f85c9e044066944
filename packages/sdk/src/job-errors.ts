/**
 * Why a job's handler stops or fails: the abort reasons and `JobAbortedError`
 * its signal carries, the errors a handler throws to steer retries
 * (`RetryableError`, `NonRetryableError`, the default `retryOn`), and the
 * worker's internal mappings from registry answers (delta rejections, lease
 * outcomes, job signals, unreachable registries) to those reasons.
 */
import type { DeltaRejection, JobSignalKind, LeaseOutcome } from '@mesh/protocol';
import { RegistryError, RegistryUnreachableError } from './errors.ts';
import { InputValidationError } from './input-schema.ts';

/**
 * Why a handler's `signal` fired. The first five are the registry's own words
 * (delta rejections and lease outcomes); the last two are the SDK's.
 */
export type JobAbortReason =
  | 'cancelled'
  | 'claim_superseded'
  | 'already_terminal'
  | 'not_owner'
  | 'not_found'
  | 'epoch_required'
  | 'deadline_exceeded'
  | 'worker_stopping';

/**
 * The `signal.reason` of an aborted handler.
 *
 * @example
 * signal.addEventListener('abort', () => {
 *   if ((signal.reason as JobAbortedError).code === 'claim_superseded') console.log('another agent owns it now');
 * });
 */
export class JobAbortedError extends Error {
  override readonly name = 'JobAbortedError';
  constructor(
    readonly jobId: string,
    readonly code: JobAbortReason,
    detail?: string,
  ) {
    super(`job ${jobId}: ${code}${detail && detail !== code ? ` (${detail})` : ''}`);
  }
}

/**
 * Thrown by a handler to say explicitly that the job should be tried again
 * (within its `max_retries`). Since 0.2.0 every thrown error is retried by
 * default, so this matters only to a custom `retryOn`.
 *
 * @example
 * handler: async () => { if (!(await upstreamUp())) throw new RetryableError('upstream down'); … }
 */
export class RetryableError extends Error {
  override readonly name = 'RetryableError';
}

/**
 * Thrown by a handler to fail the job now, with retry budget left or not
 * (like `ctx.fail()`): the default `retryOn` refuses it.
 *
 * @example
 * handler: async ({ payload }) => {
 *   if (typeof payload.url !== 'string') throw new NonRetryableError('payload.url is required');
 *   …
 * }
 */
export class NonRetryableError extends Error {
  override readonly name = 'NonRetryableError';
}

/**
 * The default retry rule (docs/sdk.md, "Retries"): every thrown error is
 * retried while the job has attempts left, except a `NonRetryableError` and an
 * `InputValidationError` (a retried attempt would read the same answer again).
 */
export const retryUnlessNonRetryable = (error: unknown): boolean =>
  !(error instanceof NonRetryableError || error instanceof InputValidationError);

export const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The registry could not be reached or could not answer (a network error, a
 * timeout, a 5xx): the request may be tried again. Anything else (a refusal,
 * a result that cannot be serialised) is final.
 */
export const unreachable = (err: unknown): boolean => {
  if (err instanceof RegistryError) return err.status >= 500;
  if (err instanceof RegistryUnreachableError) return true;
  const e = err as { name?: unknown; message?: unknown; cause?: { code?: unknown } } | null;
  return (
    e?.name === 'TimeoutError' ||
    (e?.name === 'TypeError' && (e.message === 'fetch failed' || e.message === 'terminated')) ||
    typeof e?.cause?.code === 'string'
  );
};

export const rejectionReason = (r: DeltaRejection): JobAbortReason | undefined =>
  r === 'invalid_status' ? undefined : r;

export const signalReason: Record<JobSignalKind, JobAbortReason> = {
  cancelled: 'cancelled',
  superseded: 'claim_superseded',
  terminal: 'already_terminal',
  not_found: 'not_found',
};

export const leaseReason = (o: LeaseOutcome): JobAbortReason | undefined =>
  ({
    renewed: undefined,
    superseded: 'claim_superseded' as const,
    cancelled: 'cancelled' as const,
    terminal: 'already_terminal' as const,
    not_found: 'not_found' as const,
  })[o];

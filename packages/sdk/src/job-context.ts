/**
 * What a job handler sees and what a worker reports: `JobContext` (the
 * handler's view of one claimed attempt), `JobHandler`, the options of its
 * waits (`WaitForEventOptions`, `RequestInputOptions`), and the `WorkerNotice`s
 * (with the `WriteKind`s they name) told to `onNotice`.
 */
import type { JobEvent } from '@mesh/protocol';
import type { StandardSchemaV1 } from './input-schema.ts';
import type { JobAbortReason } from './job-errors.ts';

export interface WaitForEventOptions {
  /** Event types to wait for; all types when empty. */
  types?: string[];
  /** Resolves `undefined` when nothing arrived in this time; waits indefinitely when unset. */
  timeoutMs?: number;
}

/**
 * What a job handler gets. `P` is the payload's type as the handler expects
 * it (not checked at run time: validate it yourself when it comes from
 * untrusted submitters).
 */
export interface JobContext<P = Record<string, unknown>> {
  id: string;
  payload: P;
  attempt: number;
  /**
   * This attempt's fencing token; `null` against a registry that hands out
   * none, whose writes are then checked by owner only (the legacy path).
   */
  claimEpoch: number | null;
  /**
   * Fires when the job is cancelled, its lease is lost (`claim_superseded`),
   * its `total_deadline` passes, or the worker stops hard; `signal.reason` is a
   * `JobAbortedError` saying which. After that nothing is committed.
   */
  signal: AbortSignal;
  /**
   * Reports progress, a fraction from 0 to 1 (fenced; also renews the lease).
   * False when refused or not delivered; rejects with a `RangeError` for a
   * value outside [0, 1] (a percentage such as 50, a negative number, NaN).
   */
  progress(progress: number, message?: string): Promise<boolean>;
  /**
   * Completes the job now (otherwise the handler's return value does). False
   * when refused. While the registry cannot be reached it is sent again (the
   * lease still renewed) until accepted, refused or aborted.
   */
  complete(result?: unknown): Promise<boolean>;
  /**
   * Fails the job now, for good: no retry, whatever budget is left (a thrown
   * error would be retried). Takes a message or an `Error` (its message is
   * stored). False when refused; held like `complete()`.
   *
   * @example
   * if (!payload.url) return ctx.fail(new Error('payload.url is required'));
   */
  fail(error: string | Error): Promise<boolean>;
  /**
   * Appends an event to the job's log and returns its `seq`. Event posts are
   * not fenced on the wire, so the lease is confirmed with the claim epoch
   * first; rejects with `signal.reason` once the execution is aborted.
   */
  sendEvent(type: string, payload?: unknown): Promise<number>;
  /**
   * Waits for the next event (of `types`) posted to this job, long-polling as
   * the owner: the read is fenced by the claim epoch and renews the lease.
   * Each filter keeps its own cursor, starting at the first event of the job.
   * Rejects with `signal.reason` when the job is cancelled, superseded or past
   * its deadline meanwhile.
   */
  waitForEvent(options?: WaitForEventOptions): Promise<JobEvent | undefined>;
  /**
   * Asks the submitter for input: the job turns `input_required` with `prompt`
   * as its `progress_message`, then the handler waits for a `user_input` event
   * (`client.sendInput()`) and gets its payload; the job turns `working` again.
   * Rejects when the job ends meanwhile, or after `timeoutMs` without an answer.
   * With `schema` (any Standard Schema: zod, valibot, arktype…) the answer is
   * checked and the schema's output returned; an answer it refuses rejects with
   * `InputValidationError` (after an `input_rejected` event tells the submitter).
   *
   * @example
   * const { approved } = await requestInput('Approve $42?', { schema: z.object({ approved: z.boolean() }) });
   */
  requestInput<T = unknown>(prompt: string, options?: RequestInputOptions<T>): Promise<T>;
}

/** Options of `requestInput`. */
export interface RequestInputOptions<T = unknown> {
  /** The event type that carries the answer (`user_input`, what `client.sendInput()` posts). */
  type?: string;
  /** Give up (reject) after this long without an answer. */
  timeoutMs?: number;
  /** Checks the answer; the handler gets the schema's output. */
  schema?: StandardSchemaV1<unknown, T>;
}

/**
 * A job handler: what it returns (`R`) completes the job; what it throws is
 * retried or fails it (see `retryOn`).
 *
 * @example
 * const handler: JobHandler<{ text: string }, { echoed: string }> = async ({ payload }) => ({ echoed: payload.text });
 */
export type JobHandler<P = Record<string, unknown>, R = unknown> = (ctx: JobContext<P>) => Promise<R>;

/** An owner write, as named in worker notices. */
export type WriteKind =
  | 'progress'
  | 'complete'
  | 'fail'
  | 'input'
  | 'renew'
  | 'release'
  | 'read'
  | 'event'
  /** Not a write: the registry's signals long-poll said the claim ended. */
  | 'signal';

/** What happened to a claimed job, for logs and tests (`onNotice`). */
export type WorkerNotice =
  | { type: 'claimed'; jobId: string; claimEpoch: number | null; attempt: number }
  | { type: 'refused'; jobId: string; claimEpoch: number | null; write: WriteKind; reason: string }
  | { type: 'aborted'; jobId: string; claimEpoch: number | null; reason: JobAbortReason; message: string }
  | {
      type: 'settled';
      jobId: string;
      claimEpoch: number | null;
      /** What the handler's outcome asked for; `abandoned` when it ended after an abort. */
      outcome: 'completed' | 'failed' | 'released' | 'abandoned';
      /** Whether the registry accepted it. */
      committed: boolean;
    };

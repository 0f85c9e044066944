import {
  type ClaimedJob,
  type DeltaRejection,
  features as featureNames,
  isTerminal,
  type Job,
  type JobDelta,
  type JobEvent,
  type JobSignalKind,
  type LeaseOutcome,
  limits,
  syntheticEvents,
} from '@mesh/protocol';
import { ClaimWatcher } from './claim-watch.ts';
import { inputEventType, type RegistryClient, RegistryError, RegistryUnreachableError } from './client.ts';
import {
  InputValidationError,
  inputRejectedEventType,
  type StandardSchemaV1,
  validateInput,
} from './input-schema.ts';

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
  /** Reports progress (fenced; also renews the lease). False when refused or not delivered. */
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

export interface JobWorkerOptions<P = Record<string, unknown>, R = unknown> {
  client: RegistryClient;
  /** This agent's instance id (its registered agent_id). */
  instanceId: string;
  capability: string;
  handler: JobHandler<P, R>;
  /** Jobs run at once. */
  concurrency?: number;
  /**
   * Longest time between lease renewals of a running job (default 5 s); a job
   * with a shorter `max_duration` is renewed three times per window.
   */
  renewEveryMs?: number;
  /** Longest pause between claims when there is no work (polling: registries without long-poll claims). */
  maxIdleMs?: number;
  /**
   * Against a registry that advertises `long-poll-claim`, an idle worker's
   * claim waits on the registry up to this long (default 25 s, at most 60 s)
   * and returns as soon as a job for its capability is submitted or released
   * on any replica, instead of polling. 0: always poll.
   *
   * @example
   * longPollMs: 0 // poll every maxIdleMs at most, as against MCP Mesh 3.7
   */
  longPollMs?: number;
  /**
   * Which thrown errors are tried again while the job has attempts left
   * (`attempt <= max_retries`); the others fail it at once. Default: all but
   * `NonRetryableError` (`retryUnlessNonRetryable`).
   *
   * @example
   * retryOn: (err) => !(err instanceof TypeError) // programming errors fail at once
   */
  retryOn?: (error: unknown) => boolean;
  /** Told of claims, refused writes, aborts and outcomes. */
  onNotice?: (notice: WorkerNotice) => void;
}

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The registry could not be reached or could not answer (a network error, a
 * timeout, a 5xx): the request may be tried again. Anything else (a refusal,
 * a result that cannot be serialised) is final.
 */
const unreachable = (err: unknown): boolean => {
  if (err instanceof RegistryError) return err.status >= 500;
  if (err instanceof RegistryUnreachableError) return true;
  const e = err as { name?: unknown; message?: unknown; cause?: { code?: unknown } } | null;
  return (
    e?.name === 'TimeoutError' ||
    (e?.name === 'TypeError' && (e.message === 'fetch failed' || e.message === 'terminated')) ||
    typeof e?.cause?.code === 'string'
  );
};

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Events the registry writes when a job ends under a parked handler. */
const endingEvents: string[] = [
  syntheticEvents.cancelled,
  syntheticEvents.deadlineExceeded,
  syntheticEvents.stale,
];

const rejectionReason = (r: DeltaRejection): JobAbortReason | undefined =>
  r === 'invalid_status' ? undefined : r;

const signalReason: Record<JobSignalKind, JobAbortReason> = {
  cancelled: 'cancelled',
  superseded: 'claim_superseded',
  terminal: 'already_terminal',
  not_found: 'not_found',
};

const leaseReason = (o: LeaseOutcome): JobAbortReason | undefined =>
  ({
    renewed: undefined,
    superseded: 'claim_superseded' as const,
    cancelled: 'cancelled' as const,
    terminal: 'already_terminal' as const,
    not_found: 'not_found' as const,
  })[o];

/** One claimed attempt of a job: its abort controller, fence, event cursors and deadline. */
class Execution {
  readonly abort = new AbortController();
  readonly epoch: number | null;
  readonly renewEveryMs: number;
  nextRenewAt: number;
  /** A terminal outcome (complete, fail, release) was written or refused. */
  settled: { outcome: 'completed' | 'failed' | 'released'; committed: boolean } | undefined;
  /**
   * A terminal write (complete, fail, release) has been sent. A lease renewal
   * racing it may then answer `terminal` because that write already committed:
   * the write's own answer, not the renewal's, decides.
   */
  private finishing = false;
  done: Promise<void> = Promise.resolve();
  private readonly cursors = new Map<string, { after: number; queue: JobEvent[] }>();
  private deadlineTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly job: ClaimedJob,
    private readonly client: RegistryClient,
    private readonly instanceId: string,
    renewEveryMs: number,
    private readonly notify: (n: WorkerNotice) => void,
  ) {
    // A claim without a usable epoch means an older registry: the legacy, owner-only path.
    this.epoch = Number.isSafeInteger(job.claim_epoch) && job.claim_epoch >= 0 ? job.claim_epoch : null;
    this.renewEveryMs = Math.max(
      100,
      Math.min(renewEveryMs, job.max_duration ? (job.max_duration * 1000) / 3 : Number.POSITIVE_INFINITY),
    );
    this.nextRenewAt = Date.now() + this.renewEveryMs;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  abortWith(reason: JobAbortReason, detail?: string): void {
    if (this.signal.aborted) return;
    const error = new JobAbortedError(this.job.id, reason, detail);
    this.notify({
      type: 'aborted',
      jobId: this.job.id,
      claimEpoch: this.epoch,
      reason,
      message: error.message,
    });
    this.abort.abort(error);
  }

  refused(write: WriteKind, reason: string): void {
    this.notify({ type: 'refused', jobId: this.job.id, claimEpoch: this.epoch, write, reason });
  }

  private fenced(): { claim_epoch?: number } {
    return this.epoch === null ? {} : { claim_epoch: this.epoch };
  }

  /**
   * One owner delta, fenced by the claim epoch. Resolves false (and aborts
   * the execution) when the registry refuses it; nothing is sent once aborted.
   * Rejects when the registry could not be reached.
   */
  async write(kind: WriteKind, delta: Omit<JobDelta, 'id' | 'claim_epoch'>): Promise<boolean> {
    if (this.signal.aborted) return false;
    // Terminal writes of jobs that end together share one request (delta-batcher.ts).
    const terminal = kind === 'complete' || kind === 'fail';
    const { accepted, rejected } = await this.client.delta(
      this.instanceId,
      { id: this.job.id, ...this.fenced(), ...delta },
      terminal,
    );
    if (rejected) {
      // Our own terminal write sent again after its answer was lost (settle()
      // resends on a cut or a 503 whose commit landed): a registry without
      // replay answers (0.1.0, MCP Mesh 3.7) says already_terminal. One read
      // tells: the job ended with this outcome, by this instance, at this epoch.
      if (rejected.reason === 'already_terminal') {
        if (await this.ownTerminalWriteLanded(kind)) return true;
        // A renewal or progress write that raced this attempt's own terminal
        // write (the 3.7 wire renews by writing): that write's answer decides,
        // and a handler that returned is never aborted (as applyLeaseOutcome).
        if (kind !== 'complete' && kind !== 'fail' && (this.finishing || this.settled)) return false;
      }
      this.refused(kind, rejected.reason);
      const reason = rejectionReason(rejected.reason);
      if (reason) this.abortWith(reason);
      return false;
    }
    this.nextRenewAt = Date.now() + this.renewEveryMs;
    return accepted;
  }

  /** Whether the job ended as `kind` says, by this instance at this epoch (fenced claims only). */
  private async ownTerminalWriteLanded(kind: WriteKind): Promise<boolean> {
    if ((kind !== 'complete' && kind !== 'fail') || this.epoch === null) return false;
    const job = await this.client.getJob(this.job.id).catch(() => undefined);
    return (
      job !== undefined &&
      job.status === (kind === 'complete' ? 'completed' : 'failed') &&
      job.owner_instance_id === this.instanceId &&
      job.claim_epoch === this.epoch
    );
  }

  /** Renews this job's lease alone (fenced); false, and aborted, when it is no longer ours. */
  async confirm(): Promise<boolean> {
    if (this.signal.aborted) return false;
    if (this.epoch === null) return this.write('renew', {});
    const res = await this.client.renewLeases(this.instanceId, [
      { id: this.job.id, claim_epoch: this.epoch },
    ]);
    const outcome = res?.results[0]?.outcome;
    if (!outcome) return this.write('renew', {});
    await this.applyLeaseOutcome(outcome);
    return outcome === 'renewed';
  }

  /**
   * What a lease renewal said about this attempt. Once the attempt settled
   * (its complete, fail or release answered) the answer is history: the
   * handler has returned and its signal must not fire. While a terminal write
   * is in flight, that write's own answer decides, except for a cancel or a
   * supersession the job row confirms, which no write can undo.
   */
  async applyLeaseOutcome(answer: LeaseOutcome): Promise<void> {
    if (this.settled || this.signal.aborted) return;
    if (answer === 'renewed') {
      this.nextRenewAt = Date.now() + this.renewEveryMs;
      return;
    }
    const outcome = answer === 'superseded' ? await this.recheckSuperseded() : answer;
    if (this.settled || this.signal.aborted) return;
    if (outcome === undefined) {
      // Ours and live after all: not renewed this time; ask again soon.
      this.nextRenewAt = Date.now() + Math.min(this.renewEveryMs, 1_000);
      return;
    }
    if (this.finishing && outcome === 'terminal') return;
    const reason = leaseReason(outcome) as JobAbortReason;
    this.refused('renew', reason);
    this.abortWith(reason, outcome);
  }

  /**
   * What the registry's signals long-poll said ended this claim (the rows as
   * committed, so no re-check). Once a terminal write is in flight or
   * answered, that write's own answer decides: a handler that returned is
   * never aborted.
   */
  applySignal(kind: JobSignalKind): void {
    if (this.settled || this.finishing || this.signal.aborted) return;
    const reason = signalReason[kind];
    this.refused('signal', reason);
    this.abortWith(reason);
  }

  /**
   * A registry before issue 19's fix answered `superseded` to a renewal that
   * raced the owner's own completion or a cancel. The job row tells: only a
   * claim that moved on (another owner or epoch) was superseded. `undefined`:
   * the claim is still this attempt's and live.
   */
  private async recheckSuperseded(): Promise<LeaseOutcome | undefined> {
    let job: Job;
    try {
      job = await this.client.getJob(this.job.id);
    } catch (err) {
      return err instanceof RegistryError && err.status === 404 ? 'not_found' : 'superseded';
    }
    if (job.owner_instance_id !== this.instanceId || job.claim_epoch !== this.epoch) return 'superseded';
    if (job.status === 'cancelled') return 'cancelled';
    return isTerminal(job.status) ? 'terminal' : undefined;
  }

  /**
   * Arms a timer that aborts the handler when the job's total_deadline passes.
   * Registries since 0.2.0 send the deadline with the claim; against older
   * ones (0.1.0, MCP Mesh 3.7) it is read with `GET /jobs/{id}`, which also
   * catches a job that ended between the claim and now.
   */
  async watchDeadline(): Promise<void> {
    let deadline: number | null;
    if (this.job.total_deadline !== undefined) {
      deadline = this.job.total_deadline;
    } else {
      let job: Job;
      try {
        job = await this.client.getJob(this.job.id);
      } catch {
        return; // the registry's deadline sweep still applies; the lease renewal will tell us
      }
      // The handler may have finished (and this worker written the end) while
      // the read was on its way: a settled attempt is never aborted.
      if (this.settled || this.finishing) return;
      if (isTerminal(job.status)) {
        this.abortWith(job.status === 'cancelled' ? 'cancelled' : 'already_terminal', job.status);
        return;
      }
      deadline = job.total_deadline;
    }
    if (deadline === null || this.signal.aborted) return;
    const inMs = deadline * 1000 - Date.now();
    this.deadlineTimer = setTimeout(() => this.abortWith('deadline_exceeded'), Math.max(0, inMs));
    this.deadlineTimer.unref();
  }

  dispose(): void {
    clearTimeout(this.deadlineTimer);
  }

  /** A synthetic `cancelled`/`deadline_exceeded`/`stale` event: true (and aborted) if the job did end. */
  private async endedBy(event: JobEvent): Promise<boolean> {
    // Anyone may post any event type: believe the job row, not the event.
    const job = await this.client.getJob(this.job.id).catch(() => undefined);
    if (!job || !isTerminal(job.status)) return false;
    this.abortWith(
      event.type === syntheticEvents.cancelled
        ? 'cancelled'
        : event.type === syntheticEvents.deadlineExceeded
          ? 'deadline_exceeded'
          : 'already_terminal',
      event.type,
    );
    return true;
  }

  async waitForEvent(options: WaitForEventOptions = {}): Promise<JobEvent | undefined> {
    const signal = this.signal;
    signal.throwIfAborted();
    const wanted = [...new Set((options.types ?? []).map((t) => t.trim()).filter(Boolean))].sort();
    // One cursor per filter, keyed like the reference SDK's (types joined with U+001F).
    const key = wanted.join('\u001f');
    const cursor = this.cursors.get(key) ?? { after: 0, queue: [] };
    this.cursors.set(key, cursor);
    // The events that end a job are always asked for, so a parked handler learns at once.
    const queryTypes = wanted.length ? [...new Set([...wanted, ...endingEvents])] : [];
    const matches = (e: JobEvent) => wanted.length === 0 || wanted.includes(e.type);
    const deadline =
      options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
    let failingSince: number | undefined;
    let backoff = 200;
    for (;;) {
      for (let event = cursor.queue.shift(); event; event = cursor.queue.shift()) {
        if (endingEvents.includes(event.type) && (await this.endedBy(event))) {
          if (matches(event)) return event;
          throw signal.reason;
        }
        if (matches(event)) return event;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) return undefined;
      try {
        const res = await this.client.readEvents(this.job.id, {
          after: cursor.after,
          types: queryTypes,
          wait: Math.min(60, Math.max(1, Math.ceil(remaining / 1000))),
          limit: 100,
          executor: this.epoch === null ? undefined : { instanceId: this.instanceId, claimEpoch: this.epoch },
          signal,
        });
        cursor.after = Math.max(cursor.after, res.next_after);
        cursor.queue.push(...res.events);
        failingSince = undefined;
        backoff = 200;
        // A long-poll renews the lease on the registry's side.
        if (this.epoch !== null) this.nextRenewAt = Date.now() + this.renewEveryMs;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (err instanceof RegistryError) {
          if (err.superseded) {
            this.refused('read', 'claim_superseded');
            this.abortWith('claim_superseded');
            throw signal.reason;
          }
          if (err.status === 404) {
            this.abortWith('not_found');
            throw signal.reason;
          }
          if (err.status < 500) throw err;
        }
        // Transient: ride it out for a minute, as the reference SDK does.
        failingSince ??= Date.now();
        if (Date.now() - failingSince > 60_000) throw err;
        await sleep(backoff, signal);
        backoff = Math.min(5_000, backoff * 2);
      }
    }
  }

  async sendEvent(type: string, payload: unknown): Promise<number> {
    this.signal.throwIfAborted();
    if (!(await this.confirm()))
      throw this.signal.reason ?? new Error(`job ${this.job.id}: lease not confirmed`);
    try {
      return (await this.client.postEvent(this.job.id, type, payload)).seq;
    } catch (err) {
      if (err instanceof RegistryError && (err.status === 404 || err.status === 409)) {
        const job = await this.client.getJob(this.job.id).catch(() => undefined);
        this.abortWith(
          !job ? 'not_found' : job.status === 'cancelled' ? 'cancelled' : 'already_terminal',
          job?.status,
        );
        this.refused('event', (err.body as { error?: string })?.error ?? String(err.status));
        throw this.signal.reason;
      }
      throw err;
    }
  }

  async requestInput<T>(prompt: string, options: RequestInputOptions<T> = {}): Promise<T> {
    this.signal.throwIfAborted();
    if (!(await this.write('input', { status: 'input_required', progress_message: prompt }))) {
      throw this.signal.reason ?? new Error(`job ${this.job.id}: the registry refused input_required`);
    }
    const event = await this.waitForEvent({
      types: [options.type ?? inputEventType],
      timeoutMs: options.timeoutMs,
    });
    if (!event) throw new Error(`job ${this.job.id}: no input within ${options.timeoutMs} ms`);
    let answer = event.payload as T;
    if (options.schema) {
      const checked = await validateInput(options.schema, event.payload);
      if (!checked.ok) {
        await this.sendEvent(inputRejectedEventType, { issues: checked.issues, seq: event.seq }).catch(
          () => undefined,
        );
        throw new InputValidationError(this.job.id, checked.issues, event.payload);
      }
      answer = checked.value;
    }
    // Back to working (3.7 accepts the owner's input_required → working delta).
    await this.write('progress', { status: 'working' }).catch(() => false);
    return answer;
  }

  /** A terminal write; records the outcome so the handler's return does not write again. */
  async finish(
    outcome: 'completed' | 'failed',
    delta: Omit<JobDelta, 'id' | 'claim_epoch'>,
  ): Promise<boolean> {
    if (this.settled) return false;
    if (this.signal.aborted) return false;
    this.finishing = true;
    const committed = await this.write(outcome === 'completed' ? 'complete' : 'fail', delta);
    this.settled = { outcome, committed };
    return committed;
  }

  async complete(result: unknown): Promise<boolean> {
    const info = await this.client.info();
    let value = result;
    // MCP Mesh 3.7 stores objects only (and refuses the whole batch otherwise): wrap the rest.
    const isObject = value !== null && typeof value === 'object' && !Array.isArray(value);
    if (
      !info.features.has(featureNames.anyJsonResult) &&
      value !== undefined &&
      value !== null &&
      !isObject
    ) {
      value = { value };
    }
    return this.finish('completed', {
      status: 'completed',
      progress: 1,
      ...(value === undefined || value === null ? {} : { result: value }),
    });
  }

  /**
   * Gives the job back for another attempt (fenced where supported); fails it
   * if the registry cannot. Rejects when the registry could not be reached.
   */
  async giveBack(reason: string, afterAbort = false): Promise<boolean> {
    if (this.settled || (this.signal.aborted && !afterAbort)) return false;
    this.finishing = true;
    try {
      await this.client.release(this.job.id, this.instanceId, this.epoch, reason);
      this.settled = { outcome: 'released', committed: true };
      return true;
    } catch (err) {
      if (err instanceof RegistryError && err.superseded) {
        this.refused('release', 'claim_superseded');
        this.abortWith('claim_superseded');
        this.settled = { outcome: 'released', committed: false };
        return false;
      }
      if (afterAbort) return false;
      // Not delivered: failing the job instead would be wrong; `settle()` sends it again.
      if (unreachable(err)) throw err;
      // A registry without release, or a refusal: fail instead, as the reference SDK does.
      return this.finish('failed', { status: 'failed', error: reason }).catch(() => false);
    }
  }

  /**
   * A retryable error: given back while attempts remain (`attempt_count <=
   * max_retries`), failed with the error's own message once none do. The
   * claim does not carry max_retries, so the job is read; when that read
   * fails the release goes anyway and the registry applies the budget
   * (its error then reads `exhausted (release): <message>`).
   */
  async retryOrFail(reason: string): Promise<boolean> {
    const job = await this.client.getJob(this.job.id).catch(() => undefined);
    if (this.settled || this.signal.aborted) return false;
    if (job && job.attempt_count > job.max_retries) {
      return this.finish('failed', { status: 'failed', error: reason });
    }
    return this.giveBack(reason);
  }

  /**
   * Delivers a terminal outcome (`send`: complete, fail or give back). While
   * the registry cannot be reached (an outage, a restart) the outcome is held
   * and sent again with backoff rather than dropped: the job stays running, so
   * its lease keeps being renewed, and a registry back within its outage grace
   * takes the outcome from this owner instead of re-running the job elsewhere.
   * Resolves with whether it was committed, once it is accepted or refused or
   * the execution is aborted (lease lost, cancel, deadline, a hard stop).
   */
  async settle(send: () => Promise<boolean>): Promise<boolean> {
    let backoff = 200;
    for (;;) {
      if (this.signal.aborted) return false;
      try {
        return await send();
      } catch (err) {
        if (!unreachable(err)) throw err;
        await sleep(backoff * (0.5 + Math.random()), this.signal).catch(() => undefined);
        backoff = Math.min(backoff * 2, Math.max(1_000, this.renewEveryMs));
      }
    }
  }

  context(): JobContext {
    return {
      id: this.job.id,
      payload: this.job.submitted_payload,
      attempt: this.job.attempt_count,
      claimEpoch: this.epoch,
      signal: this.signal,
      progress: (progress, message) =>
        this.write('progress', { progress, ...(message ? { progress_message: message } : {}) }).catch(
          () => false, // dropped when the registry is unreachable, like the reference SDK
        ),
      complete: (result) => this.settle(() => this.complete(result)),
      fail: (error) =>
        this.settle(() => this.finish('failed', { status: 'failed', error: errorMessage(error) })),
      sendEvent: (type, payload) => this.sendEvent(type, payload),
      waitForEvent: (options) => this.waitForEvent(options),
      requestInput: (prompt, options) => this.requestInput(prompt, options),
    };
  }
}

/**
 * Claims jobs of one capability and runs them, keeping their leases alive
 * while handlers work silently, and committing nothing once a lease is lost.
 *
 * @example
 * const worker = new JobWorker({ client, instanceId: 'echo-1a2b3c4d', capability: 'echo',
 *   handler: async ({ payload }) => ({ echoed: payload }) });
 * worker.start();
 * // … later
 * await worker.stop();
 */
export class JobWorker<P = Record<string, unknown>, R = unknown> {
  private readonly running = new Map<string, Execution>();
  private readonly client: RegistryClient;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  private wakeUp: () => void = () => {};
  /** Ends a parked long-poll claim when the worker stops. */
  private claimAbort = new AbortController();
  private readonly watcher: ClaimWatcher;

  /** `watcher`: shared by the workers of one agent (one long-poll per instance); its own otherwise. */
  constructor(
    private readonly o: JobWorkerOptions<P, R>,
    watcher?: ClaimWatcher,
  ) {
    this.client = o.client.forInstance(o.instanceId);
    this.watcher = watcher ?? new ClaimWatcher(this.client, o.instanceId);
  }

  get instanceId(): string {
    return this.o.instanceId;
  }

  get capability(): string {
    return this.o.capability;
  }

  /** Jobs running now. */
  get active(): number {
    return this.running.size;
  }

  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.claimAbort = new AbortController();
    this.loop = this.claimLoop();
    const tick = Math.max(50, Math.min(250, (this.o.renewEveryMs ?? 5_000) / 2));
    this.renewTimer = setInterval(() => void this.renew(), tick);
  }

  /** Ends the idle pause between claims now (e.g. when the registry hints at pending work). */
  wake(): void {
    this.wakeUp();
  }

  /** Stops claiming and waits for running jobs (up to `deadlineMs`), then aborts and releases what is left. */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.stopping = true;
    this.wakeUp();
    this.claimAbort.abort();
    await this.loop;
    const all = Promise.all([...this.running.values()].map((r) => r.done));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), deadlineMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      for (const r of this.running.values()) {
        // One already aborted (superseded, cancelled…) holds nothing to give back.
        if (r.signal.aborted) continue;
        r.abortWith('worker_stopping');
        await r.giveBack('worker stopping', true).catch(() => undefined);
      }
    }
    clearInterval(this.renewTimer);
    this.loop = undefined;
  }

  private pause(ms: number): Promise<'woken' | 'elapsed'> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve('elapsed'), ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve('woken');
      };
    });
  }

  private async claimLoop(): Promise<void> {
    let idle = 100;
    const limit = this.o.concurrency ?? 4;
    const maxIdle = this.o.maxIdleMs ?? 2_000;
    while (!this.stopping) {
      const free = limit - this.running.size;
      if (free <= 0) {
        await Promise.race([...[...this.running.values()].map((r) => r.done), this.pause(maxIdle)]);
        continue;
      }
      let claimed: ClaimedJob[] = [];
      let notBefore = 0;
      let waited = false;
      try {
        ({ claimed, waited } = await this.claimNext(free));
      } catch (err) {
        claimed = [];
        // Shed or database away (429/503 with Retry-After): not sooner than
        // asked, jittered upwards so a fleet of workers spreads out.
        if (err instanceof RegistryError && err.retryAfterMs)
          notBefore = err.retryAfterMs * (1 + Math.random() * 0.5);
      }
      // stop() ended a parked claim: no pause before leaving.
      if (this.stopping && claimed.length === 0) break;
      if (claimed.length === 0) {
        // The registry held the claim until its wait ended: ask again at once.
        if (waited) continue;
        if ((await this.pause(Math.max(notBefore, idle * (0.5 + Math.random())))) === 'woken') idle = 100;
        else idle = Math.min(maxIdle, idle * 2);
        continue;
      }
      idle = 100;
      for (const job of claimed) this.run(job);
    }
  }

  /**
   * One claim: a long-poll where the registry offers it (`waited`: it answered
   * empty only after parking for most of the wait), a plain claim otherwise
   * (0.1.0, MCP Mesh 3.7), after which the loop pauses with backoff.
   */
  private async claimNext(free: number): Promise<{ claimed: ClaimedJob[]; waited: boolean }> {
    const waitMs = this.o.longPollMs ?? 25_000;
    if (waitMs > 0) {
      const started = Date.now();
      const got = await this.client.claimWait(this.o.capability, this.o.instanceId, free, {
        waitMs,
        signal: this.claimAbort.signal,
      });
      if (got) {
        const waited = !got.draining && Date.now() - started >= Math.min(waitMs, limits.maxClaimWaitMs) / 2;
        return { claimed: got.jobs, waited };
      }
    }
    return { claimed: await this.client.claim(this.o.capability, this.o.instanceId, free), waited: false };
  }

  private notify = (n: WorkerNotice): void => {
    try {
      this.o.onNotice?.(n);
    } catch {
      // an observer's failure is not the job's
    }
  };

  private run(job: ClaimedJob): void {
    const exec = new Execution(
      job,
      this.client,
      this.o.instanceId,
      this.o.renewEveryMs ?? 5_000,
      this.notify,
    );
    // An older attempt of the same job still winding down here (its lease was lost, e.g. in a
    // registry outage, and this instance claimed the job again): the new claim supersedes it.
    this.running.get(job.id)?.abortWith('claim_superseded', 'claimed again');
    this.running.set(job.id, exec);
    this.watcher.add(exec);
    this.notify({ type: 'claimed', jobId: job.id, claimEpoch: exec.epoch, attempt: job.attempt_count });
    const retryOn = this.o.retryOn ?? retryUnlessNonRetryable;
    exec.done = (async () => {
      void exec.watchDeadline();
      let outcome: { ok: true; result: unknown } | { ok: false; error: unknown };
      try {
        outcome = { ok: true, result: await this.o.handler(exec.context() as unknown as JobContext<P>) };
      } catch (error) {
        outcome = { ok: false, error };
      }
      try {
        if (!exec.settled && !exec.signal.aborted) {
          if (outcome.ok) await exec.settle(() => exec.complete(outcome.result));
          else if (retryOn(outcome.error))
            await exec.settle(() => exec.retryOrFail(errorMessage(outcome.error)));
          else
            await exec.settle(() =>
              exec.finish('failed', { status: 'failed', error: errorMessage(outcome.error) }),
            );
        }
      } catch {
        // Refused otherwise than by a fence (e.g. a 400): nothing committed; the lease runs out and the job is tried again.
      } finally {
        this.watcher.remove(exec);
        exec.dispose();
        if (this.running.get(job.id) === exec) this.running.delete(job.id);
        this.notify({
          type: 'settled',
          jobId: job.id,
          claimEpoch: exec.epoch,
          outcome: exec.settled?.outcome ?? 'abandoned',
          committed: exec.settled?.committed ?? false,
        });
      }
    })();
  }

  /** Keeps silent handlers' leases alive; learns of cancels and lost leases. */
  private async renew(): Promise<void> {
    if (this.renewing) return;
    const now = Date.now();
    const due = [...this.running.values()].filter((r) => !r.signal.aborted && r.nextRenewAt <= now);
    if (due.length === 0) return;
    this.renewing = true;
    try {
      const fenced = due.filter((r) => r.epoch !== null);
      const res = fenced.length
        ? await this.client.renewLeases(
            this.o.instanceId,
            fenced.map((r) => ({ id: r.job.id, claim_epoch: r.epoch as number })),
          )
        : undefined;
      if (res) {
        // To the executions renewed (not a newer claim of the same job made meanwhile).
        const sent = new Map(fenced.map((r) => [r.job.id, r]));
        await Promise.all(res.results.map((r) => sent.get(r.id)?.applyLeaseOutcome(r.outcome)));
      }
      // A registry without bulk renewal (MCP Mesh 3.7), or legacy claims: an empty (fenced) delta renews.
      for (const r of res ? due.filter((x) => x.epoch === null) : due) await r.write('renew', {});
    } catch {
      // unreachable: try again soon, without hammering
      for (const r of due) r.nextRenewAt = Date.now() + Math.min(r.renewEveryMs, 1_000);
    } finally {
      this.renewing = false;
    }
  }
}

export { RegistryError };

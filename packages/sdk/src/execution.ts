/**
 * `Execution`: one claimed attempt of a job, run by a `JobWorker` (worker.ts).
 * It holds the attempt's abort controller and claim-epoch fence, sends its
 * owner writes (progress, renewals, complete, fail, release) and events,
 * parks on its events (`waitForEvent`, `requestInput`), settles its outcome
 * through registry outages, and builds the handler's `JobContext`.
 */
import {
  type ClaimedJob,
  features as featureNames,
  isTerminal,
  type Job,
  type JobDelta,
  type JobEvent,
  type JobSignalKind,
  type LeaseOutcome,
  syntheticEvents,
} from '@mesh/protocol';
import { inputEventType, type RegistryClient, RegistryError } from './client.ts';
import { InputValidationError, inputRejectedEventType, validateInput } from './input-schema.ts';
import type {
  JobContext,
  RequestInputOptions,
  WaitForEventOptions,
  WorkerNotice,
  WriteKind,
} from './job-context.ts';
import {
  errorMessage,
  JobAbortedError,
  type JobAbortReason,
  leaseReason,
  rejectionReason,
  signalReason,
  unreachable,
} from './job-errors.ts';

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

/** One claimed attempt of a job: its abort controller, fence, event cursors and deadline. */
export class Execution {
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
      progress: (progress, message) => {
        // 0..1 by the wire's convention (reference: not enforced by the
        // registry): a percentage or a negative value is a caller's mistake,
        // refused here rather than shown to consumers as 50 or -1.
        if (!Number.isFinite(progress) || progress < 0 || progress > 1) {
          return Promise.reject(
            new RangeError(`progress must be a fraction from 0 to 1 (0.5 is halfway), got ${progress}`),
          );
        }
        return this.write('progress', { progress, ...(message ? { progress_message: message } : {}) }).catch(
          () => false, // dropped when the registry is unreachable, like the reference SDK
        );
      },
      complete: (result) => this.settle(() => this.complete(result)),
      fail: (error) =>
        this.settle(() => this.finish('failed', { status: 'failed', error: errorMessage(error) })),
      sendEvent: (type, payload) => this.sendEvent(type, payload),
      waitForEvent: (options) => this.waitForEvent(options),
      requestInput: (prompt, options) => this.requestInput(prompt, options),
    };
  }
}

/**
 * `JobWorker` and its options: the claim loop (long-poll or polling claims
 * of one capability, up to `concurrency` at once), running each claimed job
 * as an `Execution` (execution.ts) and turning its handler's outcome into a
 * complete, retry or fail, renewing the leases of running jobs, and stopping.
 */
import { type ClaimedJob, limits } from '@mesh/protocol';
import { ClaimWatcher } from './claim-watch.ts';
import { type RegistryClient, RegistryError } from './client.ts';
import { Execution } from './execution.ts';
import type { JobContext, JobHandler, WorkerNotice } from './job-context.ts';
import { errorMessage, retryUnlessNonRetryable } from './job-errors.ts';

export interface JobWorkerOptions<P = Record<string, unknown>, R = unknown> {
  client: RegistryClient;
  /** This agent's instance id (its registered agent_id). */
  instanceId: string;
  capability: string;
  handler: JobHandler<P, R>;
  /**
   * Handlers run at once (default 4). A slot frees when its handler returns:
   * the job's completion is sent while the next claim is made (each one is
   * still tracked, renewed and waited for by `stop()`), with at most as many
   * completions in flight as handlers.
   */
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
  /** Handlers running now (`running` also holds jobs whose outcome is being sent). */
  private handlers = 0;
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
      // A slot per handler; jobs whose outcome is still being sent count
      // beyond `limit` only, so a slow registry cannot pile them up.
      const free = Math.min(limit - this.handlers, 2 * limit - this.running.size);
      if (free <= 0) {
        await this.pause(maxIdle); // until a slot frees (wake)
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
    // A handler that just returned sends its outcome in this turn: the claim
    // rides beside it (one exchange) where the registry offers that. Empty
    // (nothing queued, or draining): claim on its own, below.
    const beside = await this.client.claimBeside(this.o.instanceId, this.o.capability, free);
    if (beside && beside.jobs.length > 0) return { claimed: beside.jobs, waited: false };
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
    this.handlers += 1;
    exec.done = (async () => {
      void exec.watchDeadline();
      let outcome: { ok: true; result: unknown } | { ok: false; error: unknown };
      try {
        outcome = { ok: true, result: await this.o.handler(exec.context() as unknown as JobContext<P>) };
      } catch (error) {
        outcome = { ok: false, error };
      } finally {
        // The slot is free: the next claim goes out beside this job's outcome.
        this.handlers -= 1;
        this.wakeUp();
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
        this.wakeUp();
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

import type { ClaimedJob, Job } from '@mesh/protocol';
import { type RegistryClient, RegistryError } from './client.ts';

/** What a job handler gets. */
export interface JobContext {
  id: string;
  payload: Record<string, unknown>;
  attempt: number;
  claimEpoch: number;
  /** Fires when the job is cancelled, its lease is lost (claim superseded), or the worker stops hard. */
  signal: AbortSignal;
  /** Reports progress (fenced; also renews the lease). */
  progress(progress: number, message?: string): Promise<void>;
}

export type JobHandler = (ctx: JobContext) => Promise<unknown>;

export interface JobWorkerOptions {
  client: RegistryClient;
  /** This agent's instance id (its registered agent_id). */
  instanceId: string;
  capability: string;
  handler: JobHandler;
  /** Jobs run at once. */
  concurrency?: number;
  /** How often leases of running jobs are renewed. */
  renewEveryMs?: number;
  /** Longest pause between claims when there is no work. */
  maxIdleMs?: number;
}

interface Running {
  job: ClaimedJob;
  abort: AbortController;
  done: Promise<void>;
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
export class JobWorker {
  private readonly running = new Map<string, Running>();
  private stopping = false;
  private loop: Promise<void> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: JobWorkerOptions) {}

  start(): void {
    this.stopping = false;
    this.loop = this.claimLoop();
    this.renewTimer = setInterval(() => void this.renew().catch(() => {}), this.o.renewEveryMs ?? 5_000);
  }

  /** Stops claiming and waits for running jobs (up to `deadlineMs`), then releases what is left. */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.stopping = true;
    await this.loop;
    const all = Promise.all([...this.running.values()].map((r) => r.done));
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise((r) => setTimeout(() => r(true), deadlineMs)),
    ]);
    if (timedOut) {
      for (const r of this.running.values()) {
        r.abort.abort(new Error('worker stopping'));
        await this.o.client
          .release(r.job.id, this.o.instanceId, r.job.claim_epoch, 'worker stopping')
          .catch(() => undefined);
      }
    }
    clearInterval(this.renewTimer);
  }

  private async claimLoop(): Promise<void> {
    let idle = 100;
    const limit = this.o.concurrency ?? 4;
    while (!this.stopping) {
      const free = limit - this.running.size;
      if (free <= 0) {
        await Promise.race([...this.running.values()].map((r) => r.done));
        continue;
      }
      let claimed: ClaimedJob[] = [];
      try {
        claimed = await this.o.client.claim(this.o.capability, this.o.instanceId, free);
      } catch {
        claimed = [];
      }
      if (claimed.length === 0) {
        await new Promise((r) => setTimeout(r, idle * (0.5 + Math.random())));
        idle = Math.min(this.o.maxIdleMs ?? 2_000, idle * 2);
        continue;
      }
      idle = 100;
      for (const job of claimed) this.run(job);
    }
  }

  private run(job: ClaimedJob): void {
    const abort = new AbortController();
    const { client, instanceId } = this.o;
    // Every write carries the claim epoch: once superseded, nothing is committed.
    const send = async (delta: Record<string, unknown>): Promise<boolean> => {
      const res = await client.deltas(instanceId, [{ id: job.id, claim_epoch: job.claim_epoch, ...delta }]);
      const rejected = res.rejected[0];
      if (rejected) abort.abort(new Error(`job ${job.id}: ${rejected.reason}`));
      return res.accepted === 1;
    };
    const ctx: JobContext = {
      id: job.id,
      payload: job.submitted_payload,
      attempt: job.attempt_count,
      claimEpoch: job.claim_epoch,
      signal: abort.signal,
      progress: async (progress, message) => {
        if (!abort.signal.aborted)
          await send({ progress, ...(message ? { progress_message: message } : {}) });
      },
    };
    const done = (async () => {
      try {
        const result = await this.o.handler(ctx);
        if (!abort.signal.aborted) await send({ status: 'completed', progress: 1, result: result ?? null });
      } catch (err) {
        if (!abort.signal.aborted)
          await send({ status: 'failed', error: (err as Error)?.message ?? String(err) }).catch(() => {});
      } finally {
        this.running.delete(job.id);
      }
    })();
    this.running.set(job.id, { job, abort, done });
  }

  /** Keeps silent handlers' leases alive; learns of cancels and lost leases. */
  private async renew(): Promise<void> {
    const held = [...this.running.values()];
    if (held.length === 0) return;
    const leases = held.map((r) => ({ id: r.job.id, claim_epoch: r.job.claim_epoch }));
    const res = await this.o.client.renewLeases(this.o.instanceId, leases);
    if (res) {
      for (const r of res.results) {
        if (r.outcome !== 'renewed')
          this.running.get(r.id)?.abort.abort(new Error(`job ${r.id}: ${r.outcome}`));
      }
      return;
    }
    // A registry without bulk renewal (MCP Mesh 3.7): an empty fenced delta renews the lease.
    for (const r of held) {
      const out = await this.o.client
        .deltas(this.o.instanceId, [{ id: r.job.id, claim_epoch: r.job.claim_epoch }])
        .catch(() => undefined);
      const rejected = out?.rejected[0];
      if (rejected) r.abort.abort(new Error(`job ${r.job.id}: ${rejected.reason}`));
    }
  }
}

/**
 * Waits for a job to reach a terminal state, reporting progress on the way.
 *
 * @example
 * const job = await waitForJob(client, id, { onProgress: (j) => console.log(j.progress) });
 */
export async function waitForJob(
  client: RegistryClient,
  id: string,
  options: { timeoutMs?: number; pollMs?: number; onProgress?: (job: Job) => void } = {},
): Promise<Job> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let last: string | undefined;
  for (;;) {
    const job = await client.getJob(id);
    const seen = `${job.status}:${job.progress}:${job.progress_message}`;
    if (seen !== last) {
      last = seen;
      options.onProgress?.(job);
    }
    if (['completed', 'failed', 'cancelled'].includes(job.status)) return job;
    if (Date.now() > deadline)
      throw new Error(`job ${id} still ${job.status} after ${options.timeoutMs ?? 60_000} ms`);
    await new Promise((r) => setTimeout(r, options.pollMs ?? 200));
  }
}

export { RegistryError };

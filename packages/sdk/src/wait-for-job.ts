import { isTerminal, type Job, type JobEvent, type JobStatus } from '@mesh/protocol';
import { type RegistryClient, RegistryError } from './client.ts';

/**
 * `waitForJob` gave up after its `timeoutMs`; the job goes on. `job` is the
 * last state read (undefined if none could be read).
 *
 * @example
 * try { await waitForJob(client, id, { timeoutMs: 300_000 }); }
 * catch (err) { if (err instanceof JobWaitTimeoutError) console.log(`still ${err.job?.status}`); else throw err; }
 */
export class JobWaitTimeoutError extends Error {
  override readonly name = 'JobWaitTimeoutError';
  constructor(
    readonly jobId: string,
    readonly timeoutMs: number,
    readonly job: Job | undefined,
  ) {
    super(`job ${jobId} still ${job?.status ?? 'unread'} after ${timeoutMs} ms`);
  }
}

export interface WaitForJobOptions {
  /** Gives up with a `JobWaitTimeoutError` after this long; by default waits as long as the job runs. */
  timeoutMs?: number;
  /** Stops waiting when it aborts: the wait rejects with `signal.reason` (the job goes on). */
  signal?: AbortSignal;
  /** Every change of status, progress or progress message seen, in order (the first read included). */
  onProgress?: (job: Job) => void;
  /** Every event posted to the job, each once, in `seq` order (read with the events cursor). */
  onEvent?: (event: JobEvent) => void;
  /** Also return when the job reaches one of these live states. */
  until?: JobStatus[];
  /**
   * Longest time between two reads of the job's status (default 1 s). From
   * 1 s up it is the events long-poll's wait (whole seconds on the wire);
   * events wake the wait at once.
   */
  pollMs?: number;
}

/** The registry could not answer (network, 5xx): worth asking again. */
const transient = (err: unknown): boolean => !(err instanceof RegistryError) || err.status >= 500;

/**
 * Waits for a job to reach a terminal state (or one of `until`), as long as
 * it takes unless `timeoutMs` or `signal` says otherwise. Between reads of the
 * job it long-polls the job's events with a cursor (the 3.7 observer read), so
 * an event (a cancel, an input answer, anything the handler posts) wakes it at
 * once and none is missed; a registry outage meanwhile is ridden out.
 *
 * @example
 * const job = await waitForJob(client, id, { onProgress: (j) => console.log(j.progress) });
 * const asking = await waitForJob(client, id, { until: ['input_required'], timeoutMs: 60_000 });
 * const ctl = new AbortController(); waitForJob(client, id, { signal: ctl.signal, onEvent: (e) => console.log(e.type) });
 */
export async function waitForJob(
  client: RegistryClient,
  id: string,
  options: WaitForJobOptions = {},
): Promise<Job> {
  const { signal, timeoutMs } = options;
  const pollMs = Math.max(50, options.pollMs ?? 1_000);
  const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
  let job: Job | undefined;
  let seen: string | undefined;
  let after = 0;
  let backoff = 200;
  const timedOut = () => new JobWaitTimeoutError(id, timeoutMs as number, job);
  /** This wait's signal for one request: the caller's, and the deadline. */
  const bounded = (): AbortSignal | undefined => {
    const remaining = deadline - Date.now();
    const timer = Number.isFinite(remaining) ? AbortSignal.timeout(Math.max(0, remaining)) : undefined;
    const all = [signal, timer].filter((s): s is AbortSignal => s !== undefined);
    return all.length ? AbortSignal.any(all) : undefined;
  };
  /** Sleeps up to `ms`, less if the wait is aborted. */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, Math.max(0, Math.min(ms, deadline - Date.now())));
      signal?.addEventListener('abort', done, { once: true });
    });
  /** Reads events after the cursor (long-polling up to `waitS`), hands them out; true if any. */
  const readEvents = async (waitS: number): Promise<boolean> => {
    const res = await client.readEvents(id, { after, wait: waitS, limit: 100, signal: bounded() });
    for (const event of res.events) if (event.seq > after) options.onEvent?.(event);
    after = Math.max(after, res.next_after);
    return res.events.length > 0;
  };
  for (;;) {
    signal?.throwIfAborted();
    if (job && Date.now() >= deadline) throw timedOut();
    try {
      job = await client.getJob(id, { signal: bounded() });
      const now = `${job.status}:${job.progress}:${job.progress_message}`;
      if (now !== seen) {
        seen = now;
        options.onProgress?.(job);
      }
      if (isTerminal(job.status) || options.until?.includes(job.status)) {
        // The events up to the end (a `cancelled` among them) before the job itself.
        let more = options.onEvent !== undefined;
        while (more) more = await readEvents(0);
        return job;
      }
      const remaining = Math.min(pollMs, deadline - Date.now());
      // The wire's long-poll counts whole seconds; a shorter interval reads and sleeps.
      if (remaining >= 1_000) await readEvents(Math.min(60, Math.floor(remaining / 1_000)));
      else if (!(await readEvents(0))) await pause(remaining);
      backoff = 200;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (Date.now() >= deadline) throw timedOut();
      if (!transient(err)) throw err;
      // The registry is away (a restart, an outage): keep waiting, with backoff.
      await pause(backoff);
      backoff = Math.min(5_000, backoff * 2);
    }
  }
}

import { RegistryClient } from '@mesh/sdk';

/**
 * A job stream for fault tests: submits `ratePerSecond` jobs of `capability`,
 * each under an idempotency key of its own that it keeps retrying (backoff,
 * bounded) until a registry accepts it, as a careful client does through an
 * outage. So every submission ends as exactly one job, whatever the faults,
 * and `submitted` is the set of job ids the checker expects.
 */
export interface JobStream {
  /** Job ids accepted so far (one per submission). */
  submitted: Set<string>;
  /** Failed tries (503, unreachable): each retried with the same key. */
  failedTries(): number;
  /** Stops submitting and waits for the submissions still retrying. */
  stop(): Promise<void>;
}

export function startJobStream(options: {
  urls: string[];
  capability: string;
  ratePerSecond: number;
  /** Each job's handler holds it this long (ms), chosen by `hold`. */
  hold?: () => number;
  maxRetries?: number;
  /** Lease window (seconds) of each attempt. */
  maxDuration?: number;
}): JobStream {
  const client = new RegistryClient({ urls: options.urls, timeoutMs: 5_000, attempts: 2 });
  const submitted = new Set<string>();
  let failed = 0;
  let running = true;
  let n = 0;
  const inFlight = new Set<Promise<void>>();
  const submitOne = async (i: number) => {
    const key = `stream-${options.capability}-${process.pid}-${Date.now()}-${i}`;
    // The same request under the same key on every try: a different body would be refused (422).
    const job = {
      capability: options.capability,
      submitted_by: 'chaos-stream',
      submitted_payload: { n: i, hold_ms: options.hold?.() ?? 20 + Math.floor(Math.random() * 150) },
      ...(options.maxRetries === undefined ? {} : { max_retries: options.maxRetries }),
      ...(options.maxDuration === undefined ? {} : { max_duration: options.maxDuration }),
    };
    let backoff = 200;
    let last: unknown;
    // Bounded: a submission that no registry accepts within 3 minutes fails the test.
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      try {
        const created = await client.submit(job, { idempotencyKey: key });
        submitted.add(created.id);
        return;
      } catch (err) {
        last = err;
        failed += 1;
        await new Promise((r) => setTimeout(r, backoff * (0.5 + Math.random())));
        backoff = Math.min(2_000, backoff * 2);
      }
    }
    throw new Error(`submission ${key} was never accepted: ${(last as Error)?.message}`);
  };
  const errors: unknown[] = [];
  const loop = (async () => {
    const every = 1000 / options.ratePerSecond;
    let next = Date.now();
    while (running) {
      const p = submitOne(n++).catch((err) => void errors.push(err));
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      next += every;
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
    }
  })();
  return {
    submitted,
    failedTries: () => failed,
    async stop() {
      running = false;
      await loop;
      await Promise.all([...inFlight]);
      if (errors.length > 0) throw errors[0];
    },
  };
}

/** Job rows of one capability, read straight from the database (not through the proxy). */
export interface JobRow {
  id: string;
  status: string;
  claim_epoch: number;
  attempt_count: number;
  max_retries: number;
}

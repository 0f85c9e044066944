import type { Sql } from '@mesh/db';

/**
 * Counts what a postgres.js pool is busy with. postgres.js 3.4 exposes no pool
 * counters (its connection queues are closed over), so the registry counts in
 * a wrapper: a statement is in flight from the moment it is sent to the pool
 * (postgres.js's `handle`, when it is first awaited; a fragment embedded in
 * another statement never is) until it settles, a transaction (`begin`) from
 * its start to its end. A pool of `max` connections with `n` in flight has
 * `min(n, max)` connections in use and `n - max` statements waiting (queued, or
 * pipelined behind another statement on a busy connection).
 */
export class PoolUsage {
  inFlight = 0;
  /** Highest `inFlight` since the last `takePeak()`. */
  private peak = 0;

  constructor(readonly max: number) {}

  get inUse(): number {
    return Math.min(this.inFlight, this.max);
  }

  get waiting(): number {
    return Math.max(0, this.inFlight - this.max);
  }

  /** The highest number in flight since the last call (a scrape), then resets to the current one. */
  takePeak(): number {
    const p = this.peak;
    this.peak = this.inFlight;
    return p;
  }

  private start(): () => void {
    this.inFlight += 1;
    if (this.inFlight > this.peak) this.peak = this.inFlight;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight -= 1;
    };
  }

  private track<T>(value: T): T {
    const q = value as unknown as { handle?: () => Promise<void>; executed?: boolean } & Promise<unknown>;
    if (!(value instanceof Promise) || typeof q.handle !== 'function') return value;
    const handle = q.handle;
    const usage = this;
    q.handle = async function (this: typeof q) {
      if (!this.executed) {
        const end = usage.start();
        // Promise.prototype.then, not the query's own (which would handle it again).
        Promise.prototype.then.call(this, end, end);
      }
      return handle.call(this);
    };
    return value;
  }

  /** `sql` whose statements and transactions are counted; everything else is the pool's own. */
  wrap(sql: Sql): Sql {
    return new Proxy(sql, {
      apply: (target, self, args) => this.track(Reflect.apply(target, self, args)),
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver);
        if (prop === 'unsafe' && typeof value === 'function') {
          return (...args: unknown[]) => this.track(value.apply(target, args));
        }
        if (prop === 'begin' && typeof value === 'function') {
          return (...args: unknown[]) => {
            const end = this.start();
            const p = value.apply(target, args) as Promise<unknown>;
            p.then(end, end);
            return p;
          };
        }
        return value;
      },
    }) as Sql;
  }
}

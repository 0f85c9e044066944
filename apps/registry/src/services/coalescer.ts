/**
 * Coalesces concurrent requests into shared statements ("natural batching").
 *
 * A request that finds a free slot runs at once, alone: no timer, no added
 * latency. Requests that arrive while `maxInFlight` statements are running wait,
 * and the next statement takes all of them (up to `maxWeight`). Under load a
 * statement serves many requests, so the database does one round trip, one
 * plan and one commit for all of them; at low load nothing changes.
 *
 * Items may name keys (job ids): an item never shares a statement with, nor
 * runs beside, another item holding one of its keys, and items with a common
 * key run in arrival order. Items without a common key may overtake one another.
 */
export interface CoalescerOptions<I> {
  /** Statements running at once. */
  maxInFlight: number;
  /** Largest total weight of one statement. An item heavier than this runs alone. */
  maxWeight: number;
  weight?: (item: I) => number;
  keys?: (item: I) => readonly string[];
  /**
   * A shared statement that failed with an error this accepts (one that
   * committed nothing) is run again item by item, so the failure answers only
   * the request that caused it. Without it, the failure answers them all.
   */
  alone?: (err: unknown) => boolean;
}

interface Pending<I, O> {
  item: I;
  weight: number;
  keys: readonly string[];
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class Coalescer<I, O> {
  private readonly pending: Pending<I, O>[] = [];
  private readonly busyKeys = new Set<string>();
  private inFlight = 0;

  /**
   * @param run answers every item of one statement, in order (one outcome per
   *   item; throw to fail them all).
   */
  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly options: CoalescerOptions<I>,
  ) {}

  /** Statements running and items waiting, for tests and metrics. */
  get state(): { inFlight: number; waiting: number } {
    return { inFlight: this.inFlight, waiting: this.pending.length };
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({
        item,
        weight: this.options.weight?.(item) ?? 1,
        keys: this.options.keys?.(item) ?? [],
        resolve,
        reject,
      });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.options.maxInFlight && this.pending.length > 0) {
      const batch = this.take();
      if (batch.length === 0) return; // everything waiting conflicts with what is running
      this.inFlight += 1;
      for (const p of batch) for (const k of p.keys) this.busyKeys.add(k);
      void this.execute(batch);
    }
  }

  /** The next statement's items: oldest first, skipping (and keeping for later) conflicting ones. */
  private take(): Pending<I, O>[] {
    const batch: Pending<I, O>[] = [];
    const taken = new Set<string>();
    const blocked = new Set<string>();
    let weight = 0;
    for (let i = 0; i < this.pending.length; ) {
      const p = this.pending[i] as Pending<I, O>;
      const conflicts = p.keys.some((k) => this.busyKeys.has(k) || taken.has(k) || blocked.has(k));
      const fits = batch.length === 0 || weight + p.weight <= this.options.maxWeight;
      if (conflicts || !fits) {
        // A later item with one of these keys must not overtake this one.
        for (const k of p.keys) blocked.add(k);
        if (!fits) break;
        i += 1;
        continue;
      }
      batch.push(p);
      weight += p.weight;
      for (const k of p.keys) taken.add(k);
      this.pending.splice(i, 1);
    }
    return batch;
  }

  private async execute(batch: Pending<I, O>[]): Promise<void> {
    try {
      const out = await this.run(batch.map((p) => p.item));
      for (const [i, p] of batch.entries()) p.resolve(out[i] as O);
    } catch (err) {
      if (batch.length > 1 && this.options.alone?.(err)) {
        // Still one statement at a time: this run keeps its place in flight.
        for (const p of batch) {
          await this.run([p.item]).then((out) => p.resolve(out[0] as O), p.reject);
        }
      } else for (const p of batch) p.reject(err);
    } finally {
      this.inFlight -= 1;
      for (const p of batch) for (const k of p.keys) this.busyKeys.delete(k);
      this.pump();
    }
  }
}

/**
 * Why this replica hands out no claims: the 3.7 per-replica drain (`local`),
 * the fleet drain stored in the database (`fleet`), shutdown, or a breaking
 * migration applied under this replica (`schema`, services/schema-guard.ts).
 */
export type DrainReason = 'local' | 'fleet' | 'shutdown' | 'schema';

/**
 * The drain barrier (DESIGN.md §4.4, reference §11 item 6). A claim checks the
 * gate and registers itself in the same synchronous step, so when `enter()`
 * resolves, every claim either was in flight before and has now committed
 * (and is counted by a live-claims query made afterwards), or starts after and
 * is refused. No claim can commit on this replica once a drain has answered.
 */
export class DrainGate {
  private readonly reasons = new Set<DrainReason>();
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private readonly drainListeners = new Set<() => void>();
  private since: Date | null = null;
  /** Test hook: runs inside a claim, after it passed the gate. */
  beforeClaim: (() => Promise<void>) | undefined;

  get draining(): boolean {
    return this.reasons.size > 0;
  }

  get drainingSince(): Date | null {
    return this.since;
  }

  /** Claims that passed the gate and have not finished (committed or failed). */
  get claimsInFlight(): number {
    return this.inFlight;
  }

  has(reason: DrainReason): boolean {
    return this.reasons.has(reason);
  }

  /** Runs `claim` unless draining; `empty` is the answer when draining. */
  async claim<T>(claim: () => Promise<T>, empty: T): Promise<T> {
    if (this.reasons.size > 0) return empty;
    this.inFlight += 1;
    try {
      if (this.beforeClaim) await this.beforeClaim();
      return await claim();
    } finally {
      this.inFlight -= 1;
      if (this.inFlight === 0) for (const wake of this.waiters.splice(0)) wake();
    }
  }

  /**
   * Calls `listener` whenever a drain begins (any reason), synchronously inside
   * `enter()`: parked long-poll claims answer at once instead of claiming.
   * Returns the unsubscribe function.
   */
  onDrain(listener: () => void): () => void {
    this.drainListeners.add(listener);
    return () => this.drainListeners.delete(listener);
  }

  /** Stops new claims and resolves once the claims already in flight have finished. */
  async enter(reason: DrainReason): Promise<void> {
    if (this.reasons.size === 0) this.since = new Date();
    this.reasons.add(reason);
    for (const listener of [...this.drainListeners]) listener();
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  leave(reason: DrainReason): void {
    this.reasons.delete(reason);
    if (this.reasons.size === 0) this.since = null;
  }
}

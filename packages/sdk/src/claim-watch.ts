import type { JobSignalKind } from '@mesh/protocol';
import type { RegistryClient } from './client.ts';

/** A running attempt as the watcher sees it (the worker's `Execution`). */
export interface WatchedClaim {
  readonly job: { readonly id: string };
  readonly epoch: number | null;
  readonly signal: AbortSignal;
  /** Told once what ended this claim; it decides whether to abort its handler. */
  applySignal(kind: JobSignalKind): void;
}

const pause = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/**
 * One long-poll per agent instance (`POST /jobs/signals`) over every claim
 * its workers hold, so a cancel or a re-claim reaches the handler's signal
 * within milliseconds, whichever replica it happened on. Used only against
 * registries advertising `job-signals`; against others it stops at its first
 * call and the worker's fallbacks apply (the cancel forward is not served by
 * this SDK, so there: the next lease renewal or owner write).
 *
 * The request names the claims held; whenever that set grows the poll in
 * flight is abandoned and sent again with the new set. The registry's answer
 * is level-triggered (what the rows say now), so nothing is lost in between.
 */
export class ClaimWatcher {
  private readonly claims = new Set<WatchedClaim>();
  private looping = false;
  private inFlight: AbortController | undefined;
  private unsupported = false;

  constructor(
    private readonly client: RegistryClient,
    private readonly instanceId: string,
    /** Seconds each long-poll may park on the registry. */
    private readonly waitSeconds = 25,
  ) {}

  /** Watches `claim` until it is removed or its signal fires. */
  add(claim: WatchedClaim): void {
    if (this.unsupported || claim.epoch === null || claim.signal.aborted) return;
    this.claims.add(claim);
    claim.signal.addEventListener('abort', () => this.remove(claim), { once: true });
    // The poll in flight does not name this claim: ask again with it.
    this.inFlight?.abort();
    if (!this.looping) {
      this.looping = true;
      void this.run();
    }
  }

  /** Stops watching `claim` (its attempt settled); the last one ends the poll in flight. */
  remove(claim: WatchedClaim): void {
    if (this.claims.delete(claim) && this.claims.size === 0) this.inFlight?.abort();
  }

  private async run(): Promise<void> {
    let backoff = 200;
    for (;;) {
      // Cleared in the same tick as the check, so an `add()` never finds it stale.
      if (this.claims.size === 0) {
        this.looping = false;
        return;
      }
      const held = [...this.claims];
      const ask = new AbortController();
      this.inFlight = ask;
      const sentAt = Date.now();
      try {
        const res = await this.client.claimSignals(
          this.instanceId,
          held.map((c) => ({ id: c.job.id, claim_epoch: c.epoch as number })),
          { wait: this.waitSeconds, signal: ask.signal },
        );
        if (!res) {
          this.unsupported = true;
          this.claims.clear();
          continue;
        }
        const byClaim = new Map(held.map((c) => [`${c.job.id}/${c.epoch}`, c]));
        for (const s of res.signals) {
          const claim = byClaim.get(`${s.id}/${s.claim_epoch}`);
          if (!claim || !this.claims.has(claim)) continue;
          // Every signal is final for its claim: never ask about it again.
          this.claims.delete(claim);
          claim.applySignal(s.signal);
        }
        if (res.signals.length === 0 && Date.now() - sentAt < 1_000) {
          // Nothing, early: the replica is shutting down (it answers every poll at once). Don't spin.
          await pause(backoff * (0.5 + Math.random()));
          backoff = Math.min(5_000, backoff * 2);
        } else backoff = 200;
      } catch {
        if (ask.signal.aborted) continue;
        // Unreachable or refused: the lease renewal still tells, later; try again.
        await pause(backoff * (0.5 + Math.random()));
        backoff = Math.min(5_000, backoff * 2);
      } finally {
        if (this.inFlight === ask) this.inFlight = undefined;
      }
    }
  }
}

import type { Sql } from '@mesh/db';
import type { ClaimedJob } from '@mesh/protocol';
import type { Logger } from '../logger.ts';
import type { DrainGate } from './drain.ts';
import { claimableChannel, type JobStore } from './jobs.ts';

export interface ClaimWaitersOptions {
  /**
   * How long "this capability's queue was found empty and no notification
   * for it came since" is trusted, so that a long-poll claim arriving then
   * parks without running a claim statement. Bounds what a queueing path
   * that does not notify (an older replica in a mixed fleet, a claim rolled
   * back after SKIP LOCKED passed its rows) can cost a newly parked claim.
   */
  knownEmptyMs?: number;
  /**
   * False while the fleet has replicas that queue work without notifying
   * (an older release in a rolling upgrade): parked claims then claim again
   * every `silentFleetRecheckMs` instead of trusting notifications alone.
   */
  fleetNotifies?: () => boolean;
  silentFleetRecheckMs?: number;
}

/** How a parked claim stopped waiting. */
type Wake = 'wake' | 'timeout' | 'abort' | 'drain';

interface Waiter {
  capability: string;
  /** Told that work was queued: claim (again) before parking. */
  woken: boolean;
  /** Set while parked: ends the park. */
  resolve: ((how: Wake) => void) | undefined;
}

/**
 * Long-poll claims (`wait_ms` on `POST /jobs/claim`, feature `long-poll-claim`).
 *
 * A claim that finds nothing parks here until work for its capability is
 * queued on any replica: the statements that queue work (submit, release,
 * force reclaim, lease and orphan sweeps) send `pg_notify('mesh_claimable',
 * 'n:capability')`, one per capability per statement, and this replica
 * LISTENs on the connection that already carries `mesh_jobs` (one listening
 * connection per replica, whatever the number of parked claims).
 *
 * A notification of n jobs wakes the n oldest waiters of that capability on
 * this replica (each replica does the same; the claim statement's SKIP LOCKED
 * sorts out who gets what). The woken claim through the claim coalescer, so
 * waiters woken together share one statement; a woken waiter that finds
 * nothing parks again. A wake that lands on a claim that then leaves without
 * claiming (client gone, timeout, failure) is passed to the next waiter.
 * 1,000 parked claims cost no statement until work comes, and a job costs
 * about one claim statement per replica, not one per waiter.
 *
 * Drain stays a barrier: when the replica starts draining (any reason,
 * shutdown included) every parked claim answers at once as a draining claim,
 * and a woken claim goes through the drain gate like any other. Parked
 * claims hold nothing, so `drain --wait` does not count them.
 */
export class ClaimWaiters {
  private readonly parked = new Map<string, Set<Waiter>>();
  /** Notifications heard and listener (re)connects, in order. */
  private seq = 0;
  /** Capability → when (seq, ms) a claim found its queue empty with no notification during it. */
  private readonly empty = new Map<string, { seq: number; at: number }>();
  private unlisten: (() => Promise<void>) | undefined;
  private readonly stopDrainWatch: () => void;
  private readonly knownEmptyMs: number;
  private readonly fleetNotifies: () => boolean;
  private readonly silentFleetRecheckMs: number;
  private stopped = false;

  constructor(
    private readonly sql: Sql,
    private readonly jobs: JobStore,
    private readonly gate: DrainGate,
    private readonly logger: Logger,
    options: ClaimWaitersOptions = {},
  ) {
    this.knownEmptyMs = options.knownEmptyMs ?? 5_000;
    this.fleetNotifies = options.fleetNotifies ?? (() => true);
    this.silentFleetRecheckMs = options.silentFleetRecheckMs ?? 2_000;
    this.stopDrainWatch = gate.onDrain(() => this.endAll('drain'));
  }

  /** Claims parked now, waiting for work (not those claiming): tests, metrics. */
  get parkedCount(): number {
    let n = 0;
    for (const set of this.parked.values()) for (const w of set) if (w.resolve) n += 1;
    return n;
  }

  async start(): Promise<void> {
    const { unlisten } = await this.sql.listen(
      claimableChannel,
      (payload) => this.heard(payload),
      // Also after a reconnect of the listening connection: what was queued
      // meanwhile sent no notification here, so every parked claim looks again.
      () => {
        this.seq += 1;
        this.empty.clear();
        for (const set of this.parked.values()) this.wake(set, set.size);
        this.logger.debug({ channel: claimableChannel }, 'listening for claimable work');
      },
    );
    this.unlisten = unlisten;
  }

  /** Answers every parked claim now and stops listening (shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopDrainWatch();
    this.endAll('drain');
    await this.unlisten?.().catch(() => {});
  }

  /**
   * Claims up to `max` jobs, parking up to `waitMs` while there are none.
   * `null`: this replica is draining (or stopping), nothing was claimed.
   * `signal` is the client's connection: once it is gone the claim stops
   * waiting and claims nothing more. A claim statement already running when
   * it goes still commits; its jobs' leases expire as for any lost answer.
   */
  async claim(
    capability: string,
    instanceId: string,
    max: number,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<ClaimedJob[] | null> {
    const deadline = Date.now() + waitMs;
    // Registered before the first claim: work queued while it runs wakes it.
    const waiter: Waiter = { capability, woken: false, resolve: undefined };
    let set = this.parked.get(capability);
    if (!set) {
      set = new Set();
      this.parked.set(capability, set);
    }
    set.add(waiter);
    let claimedAfterWake = true;
    try {
      let skip = this.knownEmpty(capability);
      for (;;) {
        if (!skip) {
          if (signal.aborted) return [];
          claimedAfterWake = false;
          waiter.woken = false;
          const before = this.seq;
          const got = await this.gate.claim(() => this.jobs.claim(capability, instanceId, max), null);
          claimedAfterWake = true;
          if (got === null || got.length > 0) return got;
          if (this.seq === before) this.markEmpty(capability, before);
        }
        skip = false;
        const left = deadline - Date.now();
        const recheck = !this.fleetNotifies() && left > this.silentFleetRecheckMs;
        const how = await this.park(waiter, recheck ? this.silentFleetRecheckMs : left, signal);
        if (how === 'drain') return null;
        if (how === 'timeout' && recheck) continue;
        if (how !== 'wake') return [];
      }
    } finally {
      set.delete(waiter);
      if (set.size === 0 && this.parked.get(capability) === set) this.parked.delete(capability);
      // A wake this claim did not use (or used in a claim that failed) goes to the next waiter.
      if (waiter.woken || !claimedAfterWake) {
        const rest = this.parked.get(capability);
        if (rest) this.wake(rest, 1);
      }
    }
  }

  private park(waiter: Waiter, ms: number, signal: AbortSignal): Promise<Wake> {
    if (waiter.woken) return Promise.resolve('wake');
    if (this.gate.draining || this.stopped) return Promise.resolve('drain');
    if (signal.aborted) return Promise.resolve('abort');
    if (ms <= 0) return Promise.resolve('timeout');
    return new Promise<Wake>((resolve) => {
      const done = (how: Wake) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        waiter.resolve = undefined;
        resolve(how);
      };
      const onAbort = () => done('abort');
      const timer = setTimeout(() => done('timeout'), ms);
      signal.addEventListener('abort', onAbort, { once: true });
      waiter.resolve = done;
    });
  }

  /** A `n:capability` notification: n jobs of the capability were queued. */
  private heard(payload: string): void {
    this.seq += 1;
    const colon = payload.indexOf(':');
    const n = Number(payload.slice(0, colon));
    const capability = payload.slice(colon + 1);
    this.empty.delete(capability);
    const set = this.parked.get(capability);
    if (set) this.wake(set, Number.isSafeInteger(n) && n > 0 ? n : set.size);
  }

  /** Wakes the `n` oldest waiters of a set not yet woken (a Set iterates in insertion order). */
  private wake(set: Set<Waiter>, n: number): void {
    let left = n;
    for (const waiter of set) {
      if (left <= 0) break;
      if (waiter.woken) continue;
      waiter.woken = true;
      left -= 1;
      waiter.resolve?.('wake');
    }
  }

  private endAll(how: Wake): void {
    for (const set of this.parked.values()) for (const waiter of set) waiter.resolve?.(how);
  }

  private knownEmpty(capability: string): boolean {
    if (!this.fleetNotifies()) return false;
    const mark = this.empty.get(capability);
    if (!mark) return false;
    if (Date.now() - mark.at < this.knownEmptyMs) return true;
    this.empty.delete(capability);
    return false;
  }

  private markEmpty(capability: string, seq: number): void {
    // Capabilities are the callers' strings: a bounded memory, forgetting is safe (a claim runs).
    if (this.empty.size >= 10_000) this.empty.clear();
    this.empty.set(capability, { seq, at: Date.now() });
  }
}

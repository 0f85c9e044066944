import type { Sql } from '@mesh/db';
import type { ClaimedJob } from '@mesh/protocol';
import type { Logger } from '../logger.ts';
import type { DrainGate } from './drain.ts';
import { claimableChannel, type Handoff, type HandoffTaker, type JobStore } from './jobs.ts';

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

/** How a parked claim stopped waiting; `handoff`: a submission here gave it its job (`handed`). */
type Wake = 'wake' | 'timeout' | 'abort' | 'drain' | 'handoff';

interface Waiter {
  capability: string;
  instanceId: string;
  /** Told that work was queued: claim (again) before parking. */
  woken: boolean;
  /** A submission on this replica is inserting a job claimed for it. */
  reserved: boolean;
  handed: ClaimedJob | undefined;
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
 * A job submitted on this replica while a claim of its capability is parked
 * here is handed to it (`reserve`, JobSubmissions.insertClaimed (job-submissions.ts)): inserted already
 * claimed, so pickup costs one commit, not a commit, a notification and a
 * claim statement. Only while the capability is known empty (a claim found
 * its queue empty and no notification for it came since), so a handoff never
 * passes over an older queued job that this replica has heard of. A job
 * queued on another replica whose notification is still on its way may start
 * after a job handed off here: order across replicas is not promised. (Unlike
 * `knownEmptyMs`, the mark does not age for this: what a stale mark can cost
 * is order, never a job, as the passed-over job is claimed by the next claim.)
 *
 * Drain stays a barrier: when the replica starts draining (any reason,
 * shutdown included) every parked claim answers at once as a draining claim,
 * and a woken claim or a handoff goes through the drain gate like any other
 * claim. Parked claims hold nothing, so `drain --wait` does not count them.
 */
export class ClaimWaiters implements Handoff {
  private readonly parked = new Map<string, Set<Waiter>>();
  /**
   * Notifications heard per capability that has claims here (kept while it
   * has), and listener reconnects (which count for every such capability).
   */
  private readonly heardFor = new Map<string, number>();
  /** Capability → when (ms) a claim found its queue empty with no notification for it during it. */
  private readonly empty = new Map<string, number>();
  private unlisten: (() => Promise<void>) | undefined;
  private readonly stopDrainWatch: () => void;
  private readonly knownEmptyMs: number;
  private readonly fleetNotifies: () => boolean;
  private readonly silentFleetRecheckMs: number;
  private stopped = false;
  /** Submissions handed to a parked claim (`mesh_claim_handoffs_total`). */
  handoffs = 0;

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
        for (const capability of this.parked.keys()) this.bumpHeard(capability);
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
    const waiter: Waiter = {
      capability,
      instanceId,
      woken: false,
      reserved: false,
      handed: undefined,
      resolve: undefined,
    };
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
          const heard = this.heardFor.get(capability) ?? 0;
          const got = await this.gate.claim(() => this.jobs.claim(capability, instanceId, max), null);
          claimedAfterWake = true;
          if (got === null || got.length > 0) return got;
          if ((this.heardFor.get(capability) ?? 0) === heard) this.markEmpty(capability);
        }
        skip = false;
        const left = deadline - Date.now();
        const recheck = !this.fleetNotifies() && left > this.silentFleetRecheckMs;
        const how = await this.park(waiter, recheck ? this.silentFleetRecheckMs : left, signal);
        if (how === 'handoff' && waiter.handed) return [waiter.handed];
        if (how === 'drain') return null;
        if (how === 'timeout' && recheck) continue;
        if (how !== 'wake') return [];
      }
    } finally {
      set.delete(waiter);
      if (set.size === 0 && this.parked.get(capability) === set) {
        this.parked.delete(capability);
        this.heardFor.delete(capability);
      }
      // A wake this claim did not use (or used in a claim that failed) goes to the next waiter.
      if (waiter.woken || !claimedAfterWake) {
        const rest = this.parked.get(capability);
        if (rest) this.wake(rest, 1);
      }
    }
  }

  /**
   * For a job being submitted on this replica: the oldest claim of the
   * capability parked here, reserved for it, if the queue is known empty and
   * the replica is not draining (the insert passes the drain gate as well).
   */
  reserve(capability: string): HandoffTaker | undefined {
    if (this.stopped || this.gate.draining || !this.fleetNotifies() || !this.empty.has(capability)) return;
    const set = this.parked.get(capability);
    if (!set) return;
    let waiter: Waiter | undefined;
    for (const w of set) {
      if (w.resolve && !w.woken && !w.reserved) {
        waiter = w;
        break;
      }
    }
    if (!waiter) return;
    const taken = waiter;
    taken.reserved = true;
    return {
      instanceId: taken.instanceId,
      gated: (insert) => this.gate.claim(insert, null),
      deliver: (job) => {
        taken.reserved = false;
        if (!taken.resolve) return false;
        taken.handed = job;
        this.handoffs += 1;
        taken.resolve('handoff');
        return true;
      },
      cancel: () => {
        taken.reserved = false;
        // A notification heard while it was reserved skipped it: it claims
        // once more before parking again (rare: a failed insert, a replayed
        // idempotency key, a drain).
        if (taken.resolve) {
          taken.woken = true;
          taken.resolve('wake');
        }
      },
    };
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
    const colon = payload.indexOf(':');
    const n = Number(payload.slice(0, colon));
    const capability = payload.slice(colon + 1);
    this.empty.delete(capability);
    const set = this.parked.get(capability);
    if (!set) return;
    this.bumpHeard(capability);
    this.wake(set, Number.isSafeInteger(n) && n > 0 ? n : set.size);
  }

  private bumpHeard(capability: string): void {
    this.heardFor.set(capability, (this.heardFor.get(capability) ?? 0) + 1);
  }

  /** Wakes the `n` oldest waiters of a set not yet woken (a Set iterates in insertion order). */
  private wake(set: Set<Waiter>, n: number): void {
    let left = n;
    for (const waiter of set) {
      if (left <= 0) break;
      if (waiter.woken || waiter.reserved) continue;
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
    const at = this.empty.get(capability);
    if (at === undefined) return false;
    if (Date.now() - at < this.knownEmptyMs) return true;
    this.empty.delete(capability);
    return false;
  }

  private markEmpty(capability: string): void {
    // Capabilities are the callers' strings: a bounded memory, forgetting is safe (a claim runs).
    if (this.empty.size >= 10_000) this.empty.clear();
    this.empty.set(capability, Date.now());
  }
}

import { ApiError } from '../errors.ts';

/**
 * The classes of main-port routes that share a capacity. Operator routes
 * (health, readiness, metrics, admin) have no class: they are never shed.
 */
export type RouteClass = 'claim' | 'submit' | 'owner' | 'read' | 'wait';

export const routeClasses: readonly RouteClass[] = ['claim', 'submit', 'owner', 'read', 'wait'];

export interface AdmissionLimits {
  /** Requests of one class served at once (every class but `wait`). */
  maxInFlight: number;
  /** Requests of one class waiting for a slot; beyond, shed at once. */
  maxQueued: number;
  /** A request waiting longer than this for a slot is shed. */
  maxQueueWaitMs: number;
  /** Long-polls (`wait`) held at once; they are never queued. */
  maxLongPolls: number;
}

export type ShedReason = 'queue_full' | 'queue_timeout';

/**
 * Which class a request belongs to, from its method and path alone (the body
 * is not read before admission), or undefined for routes never shed.
 */
export function classify(method: string, path: string, query: (name: string) => string | undefined) {
  if (method === 'POST') {
    if (path === '/jobs') return 'submit';
    if (path === '/jobs/claim') return 'claim';
    if (path === '/jobs/signals') return 'wait';
    if (/^\/jobs\/[^/]+\/reclaim$/.test(path)) return undefined; // an admin route
    if (path === '/heartbeat' || path.startsWith('/jobs/')) return 'owner';
    return undefined;
  }
  if (method === 'GET' || method === 'HEAD') {
    if (/^\/jobs\/[^/]+\/events$/.test(path) && Number(query('wait') ?? 0) > 0) return 'wait';
    if (path === '/jobs' || path.startsWith('/jobs/') || path === '/agents') return 'read';
    if (path.startsWith('/heartbeat/')) return 'owner';
    return undefined;
  }
  if (method === 'DELETE' && path.startsWith('/agents/')) return 'owner';
  return undefined;
}

/** The answer to a shed request: 503 `overloaded` with `Retry-After`. */
export const overloaded = (cls: RouteClass, why: string) =>
  new ApiError('overloaded', `registry overloaded (${cls} requests ${why}); retry later`, 1);

interface Waiter {
  admit: () => void;
  timer: NodeJS.Timeout;
}

class Lane {
  active = 0;
  readonly queue: Waiter[] = [];
  constructor(
    readonly limit: number,
    readonly maxQueued: number,
  ) {}
}

/**
 * Bounded admission per route class (issue 16): a fixed number of requests
 * served at once, a bounded FIFO queue waiting for a slot, and a bounded
 * wait in it. Beyond that a request is shed with 503 + `Retry-After` rather
 * than queued without bound, so memory and latency stay bounded and the
 * admin listener (same event loop) keeps answering. A slot is held until its
 * handler really ends, including one that outlived the database bound: work
 * hung on an unreachable database is bounded too.
 */
export class Admission {
  private readonly lanes = new Map<RouteClass, Lane>();
  /** Counts a shed request (metrics). */
  onShed: ((cls: RouteClass, reason: ShedReason) => void) | undefined;

  constructor(private readonly limits: AdmissionLimits) {
    for (const cls of routeClasses) {
      this.lanes.set(
        cls,
        cls === 'wait' ? new Lane(limits.maxLongPolls, 0) : new Lane(limits.maxInFlight, limits.maxQueued),
      );
    }
  }

  /** Requests of `cls` being served and waiting. */
  load(cls: RouteClass): { active: number; queued: number } {
    const lane = this.lanes.get(cls) as Lane;
    return { active: lane.active, queued: lane.queue.length };
  }

  /**
   * Takes a slot of `cls` (waiting for one, bounded); resolves with its
   * release, or rejects with the `overloaded` ApiError.
   */
  enter(cls: RouteClass): Promise<() => void> | (() => void) {
    const lane = this.lanes.get(cls) as Lane;
    const release = this.releaser(lane);
    if (lane.active < lane.limit && lane.queue.length === 0) {
      lane.active += 1;
      return release;
    }
    if (lane.queue.length >= lane.maxQueued) {
      this.onShed?.(cls, 'queue_full');
      throw overloaded(cls, lane.maxQueued > 0 ? 'queue full' : `at the limit of ${lane.limit}`);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        admit: () => resolve(release),
        timer: setTimeout(() => {
          const at = lane.queue.indexOf(waiter);
          if (at >= 0) lane.queue.splice(at, 1);
          this.onShed?.(cls, 'queue_timeout');
          reject(overloaded(cls, `waited ${this.limits.maxQueueWaitMs} ms for a slot`));
        }, this.limits.maxQueueWaitMs),
      };
      lane.queue.push(waiter);
    });
  }

  private releaser(lane: Lane): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = lane.queue.shift();
      if (next) {
        clearTimeout(next.timer);
        next.admit(); // the slot passes on: `active` is unchanged
      } else lane.active -= 1;
    };
  }
}

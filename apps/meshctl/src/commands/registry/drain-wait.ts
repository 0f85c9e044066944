// The wait of `meshctl registry drain --wait`: rounds of polls until no live
// claim remains, each round checking that what is watched still drains.

import type { Context } from '../../cli/context.ts';
import { CliError, ConnectionError } from '../../cli/errors.ts';
import { fetchFleet, replicaBase } from '../../cli/fleet.ts';
import type { RegistryHttp } from '../../cli/http.ts';
import { drainCall, shortBoot, stateOf } from './shared.ts';

/** One replica being watched during `drain --wait`. */
export interface Watched {
  id: string;
  base: string | undefined;
  bootId: string | undefined;
  claims: number | undefined;
  failures: number;
  /** Why this replica's last answer cannot end the wait (database unreachable, claims in flight). */
  unsure?: string;
}

export interface DrainWaitOptions {
  fleet: boolean;
  persist: boolean;
  /** Done when the watched replicas' own claims are 0, whatever other replicas hand out. */
  ownClaims: boolean;
  timeoutS: number;
  pollS: number;
  resumeCommand: string;
}

/** Consecutive failed polls after which a replica counts as gone. */
const maxPollFailures = 3;

/** What the rounds of one wait share. */
interface DrainWait {
  ctx: Context;
  http: RegistryHttp;
  /** Grows (fleet mode: a replica started under the fleet drain) and shrinks (one gone, --persist). */
  watched: Watched[];
  opts: DrainWaitOptions;
  /** The live claims (fleet-wide) of the last drain answer that came back. */
  liveClaims: number;
  name(w: Watched): string;
  abort(reason: string): CliError;
}

/**
 * The wait of `drain --wait`: polls until no live claim remains, checking at
 * every round that every watched replica still drains under the same boot,
 * and (fleet mode) that no replica joined that dispatches.
 */
export async function waitForDrained(
  ctx: Context,
  http: RegistryHttp,
  watched: Watched[],
  opts: DrainWaitOptions,
): Promise<void> {
  const started = Date.now();
  const pollMs = Math.max(1, opts.pollS) * 1000;
  const wait: DrainWait = {
    ctx,
    http,
    watched,
    opts,
    liveClaims: Number.POSITIVE_INFINITY,
    name: (w) => (opts.fleet ? `replica ${w.id}` : 'registry'),
    abort: (reason) =>
      new CliError(
        `${reason} — aborting wait; the drain is NOT known to be complete`,
        1,
        `Re-run \`meshctl registry drain --wait${opts.fleet ? ' --all' : ''}\` if you still intend to drain, or resume with: ${opts.resumeCommand}`,
      ),
  };
  for (let round = 0; ; round++) {
    if (round > 0) await new Promise((r) => setTimeout(r, pollMs));
    const elapsed = (Date.now() - started) / 1000;
    // One round: every watched replica's drain state, plus the fleet list.
    await Promise.all(watched.map((w) => pollReplica(wait, w)));
    if (watched.length === 0) throw wait.abort('no replica of the fleet answers any more');
    if (opts.fleet) await followFleet(wait);
    if (reportRound(wait, started, elapsed)) return;
  }
}

/** One replica's drain state: still draining, same boot; its claims and whether they can be trusted. */
async function pollReplica(wait: DrainWait, w: Watched): Promise<void> {
  const { ctx, http, watched, opts, name, abort } = wait;
  try {
    const { body } = await drainCall(http, 'GET', w.base);
    w.failures = 0;
    if (!body.draining) {
      throw abort(`${name(w)} is no longer draining (concurrent resume or restart?)`);
    }
    if (w.bootId && body.boot_id && body.boot_id !== w.bootId) {
      // Under a persisted fleet drain a restarted replica comes back
      // draining (it reads the drain before serving a claim): say so, go on.
      if (opts.persist) {
        ctx.out.warn(`${name(w)} restarted mid-wait; it came back draining (fleet drain in force)`);
        w.bootId = body.boot_id;
      } else
        throw abort(
          `${name(w)} restarted mid-wait (boot ${shortBoot(w.bootId)} → ${shortBoot(body.boot_id)})`,
        );
    }
    w.claims = body.live_claims_this_replica;
    wait.liveClaims = body.live_claims;
    // During a database outage the replica answers from its last read
    // (stale) and claims may still be in flight: neither can end the wait.
    const extra = body as {
      stale?: boolean;
      live_claims_age_seconds?: number | null;
      claims_in_flight?: number;
    };
    w.unsure = extra.stale
      ? `database unreachable at ${w.id}; counts from ${extra.live_claims_age_seconds ?? '?'}s ago`
      : (extra.claims_in_flight ?? 0) > 0
        ? `${extra.claims_in_flight} claim(s) in flight at ${w.id}`
        : undefined;
  } catch (err) {
    if (!(err instanceof ConnectionError)) throw err;
    w.failures += 1;
    if (w.failures >= maxPollFailures) {
      if (!opts.persist) throw abort(`${name(w)} disappeared mid-wait (${err.message})`);
      ctx.out.warn(`${name(w)} is unreachable (${err.message}); the fleet drain holds if it comes back`);
      watched.splice(watched.indexOf(w), 1);
    }
  }
}

/** Fleet mode: a watched replica that left aborts (or, persisted, is let go); one that joined draining is watched too. */
async function followFleet(wait: DrainWait): Promise<void> {
  const { ctx, http, watched, opts, abort } = wait;
  const fleet = await fetchFleet(http).catch((err: Error) => {
    if (err instanceof ConnectionError) return undefined;
    throw err;
  });
  for (const r of fleet?.replicas ?? []) {
    const w = watched.find((x) => x.id === r.replica_id);
    if (w && !r.live) {
      if (opts.persist) {
        ctx.out.warn(
          `replica ${r.replica_id} left mid-wait (${stateOf(r)}); the fleet drain holds if it comes back`,
        );
        watched.splice(watched.indexOf(w), 1);
        continue;
      }
      throw abort(
        `replica ${r.replica_id} disappeared mid-wait (${stateOf(r)}, last seen ${r.last_seen_at})`,
      );
    }
    if (!w && r.live) {
      if (!r.draining) throw abort(`replica ${r.replica_id} joined mid-wait and is dispatching claims`);
      // Started under the fleet drain: watch it too.
      watched.push({
        id: r.replica_id,
        base: replicaBase(r) ?? undefined,
        bootId: r.boot_id,
        claims: undefined,
        failures: 0,
      });
    }
  }
}

/** Prints the round's progress line; true when the drain is done, a `CliError` past --wait-timeout. */
function reportRound(wait: DrainWait, started: number, elapsed: number): boolean {
  const { ctx, watched, opts, liveClaims } = wait;
  const perReplica =
    opts.fleet || opts.ownClaims
      ? ` (${watched.map((w) => `${w.id}: ${w.failures ? '?' : (w.claims ?? '?')}`).join(', ')})`
      : '';
  const unsure = watched.flatMap((w) => (w.unsure ? [w.unsure] : []));
  const done =
    (opts.ownClaims ? watched.every((w) => w.claims === 0) : liveClaims === 0) && unsure.length === 0;
  const line = `  Live claims: ${liveClaims}${perReplica}${unsure.length ? ` · ${unsure.join('; ')}` : ''}`;
  const took = ` · ${Math.round((Date.now() - started) / 1000)}s elapsed`;
  if (done && watched.every((w) => w.failures === 0)) {
    ctx.out.progress(line, took);
    ctx.out.endProgress();
    return true;
  }
  ctx.out.progress(line, took);
  if (opts.timeoutS > 0 && elapsed >= opts.timeoutS) {
    throw new CliError(
      `timed out after ${opts.timeoutS}s with ${liveClaims} live claim(s) still running; the registry is still draining (new claims paused)`,
      1,
      `To resume dispatch: ${opts.resumeCommand}`,
    );
  }
  return false;
}

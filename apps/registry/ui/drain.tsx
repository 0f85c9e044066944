import type { DrainStatus } from '@mesh/protocol';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.ts';

/** What the dashboard drains: one replica through its admin route, or the fleet through the database. */
export type DrainTarget = { kind: 'replica'; id: string } | { kind: 'fleet' };

interface Proxied<T> {
  status: number;
  body: T | string;
}

type DrainBody = DrainStatus & {
  stale?: boolean;
  claims_in_flight?: number;
  live_claims_age_seconds?: number;
};
interface FleetBody {
  fleet_draining: boolean;
  live_claims: number;
  replicas: { replica_id: string; draining: boolean; boot_id: string }[];
}

type Phase =
  | { kind: 'waiting'; line: string; unsure?: string }
  | { kind: 'done'; line: string }
  | { kind: 'aborted'; reason: string; line: string };

const pollMs = 1_000;
/** Consecutive failed polls after which the replica counts as gone (meshctl's rule). */
const maxFailures = 3;

const describe = (t: DrainTarget) => (t.kind === 'fleet' ? 'the fleet' : `replica ${t.id}`);
const pathOf = (t: DrainTarget) =>
  t.kind === 'fleet' ? '/fleet/drain' : `/replicas/${encodeURIComponent(t.id)}/drain`;

/**
 * `meshctl registry drain --wait`'s barrier in the browser: drains, then polls
 * until no live claim remains. One replica waits for the claims it handed out
 * (`--own-claims`: a rolling upgrade's step while the others dispatch); the
 * fleet waits for every live claim (`--persist`). It aborts loudly when the
 * target stops draining or restarts, and never says "safe" while the count is
 * stale (database unreachable) or claims are still in flight.
 */
export function DrainProgress(props: { target: DrainTarget; onClose: () => void }) {
  const { target } = props;
  const [phase, setPhase] = useState<Phase>({ kind: 'waiting', line: `Draining ${describe(target)}…` });
  const started = useRef(Date.now());
  useEffect(() => {
    let stopped = false;
    let boot: string | undefined;
    let boots = new Map<string, string>();
    let failures = 0;
    const elapsed = () => `${Math.round((Date.now() - started.current) / 1000)}s elapsed`;
    const abort = (reason: string, line: string) => {
      stopped = true;
      setPhase({ kind: 'aborted', reason, line });
    };
    const round = async (first: boolean) => {
      const res = await api<Proxied<DrainBody | FleetBody>>(pathOf(target), first ? 'POST' : 'GET').catch(
        (err: Error) => ({ status: 0, body: err.message }),
      );
      if (stopped) return;
      if (res.status !== 200 || typeof res.body === 'string') {
        failures += 1;
        const why = typeof res.body === 'string' ? res.body : `HTTP ${res.status}`;
        if (first || failures >= maxFailures)
          abort(`${describe(target)} does not answer (${why})`, elapsed());
        return;
      }
      failures = 0;
      if (target.kind === 'replica') {
        const b = res.body as DrainBody;
        if (!b.draining)
          return abort(`${describe(target)} is no longer draining (resumed, or restarted?)`, elapsed());
        if (boot && b.boot_id && b.boot_id !== boot) {
          return abort(
            `${describe(target)} restarted mid-wait (boot ${boot.slice(0, 8)} → ${b.boot_id.slice(0, 8)})`,
            elapsed(),
          );
        }
        boot ??= b.boot_id;
        const mine = b.live_claims_this_replica ?? b.live_claims;
        const unsure = b.stale
          ? `database unreachable: counts from ${b.live_claims_age_seconds ?? '?'}s ago`
          : (b.claims_in_flight ?? 0) > 0
            ? `${b.claims_in_flight} claim(s) in flight`
            : undefined;
        const line = `Live claims on ${target.id}: ${mine} (fleet-wide: ${b.live_claims}) · ${elapsed()}`;
        if (mine === 0 && !unsure) {
          stopped = true;
          setPhase({
            kind: 'done',
            line: `All jobs claimed through ${target.id} drained — safe to upgrade/restart it · ${elapsed()}`,
          });
        } else setPhase({ kind: 'waiting', line, ...(unsure ? { unsure } : {}) });
        return;
      }
      const f = res.body as FleetBody;
      if (!f.fleet_draining) return abort('the fleet drain was lifted (resumed?)', elapsed());
      const dispatching = f.replicas.find((r) => !r.draining);
      if (dispatching && !first) {
        return abort(
          `replica ${dispatching.replica_id} joined mid-wait and is dispatching claims`,
          elapsed(),
        );
      }
      const restarted = f.replicas.filter(
        (r) => boots.has(r.replica_id) && boots.get(r.replica_id) !== r.boot_id,
      );
      boots = new Map(f.replicas.map((r) => [r.replica_id, r.boot_id]));
      const warn = restarted.length
        ? `${restarted.map((r) => r.replica_id).join(', ')} restarted mid-wait; came back draining (fleet drain in force)`
        : undefined;
      const line = `Live claims: ${f.live_claims} · ${f.replicas.length} live replica(s) draining · ${elapsed()}`;
      if (f.live_claims === 0 && !dispatching) {
        stopped = true;
        setPhase({ kind: 'done', line: `All jobs drained — safe to upgrade/restart · ${elapsed()}` });
      } else setPhase({ kind: 'waiting', line, ...(warn ? { unsure: warn } : {}) });
    };
    void (async () => {
      await round(true);
      while (!stopped) {
        await new Promise((r) => setTimeout(r, pollMs));
        if (!stopped) await round(false);
      }
    })();
    return () => {
      stopped = true;
    };
  }, [target]);

  return (
    <section class={`drain-progress ${phase.kind}`} data-phase={phase.kind} aria-live="polite">
      <h3>Drain of {describe(target)}</h3>
      {phase.kind === 'aborted' ? (
        <p class="loud">
          ABORTED: {phase.reason} — the drain is NOT known to be complete. Drain again if you still intend to,
          or resume.
        </p>
      ) : null}
      {phase.kind === 'done' ? <p class="ok">{phase.line}</p> : <p class="line">{phase.line}</p>}
      {phase.kind === 'waiting' && phase.unsure ? <p class="warn">Not yet: {phase.unsure}</p> : null}
      {phase.kind === 'waiting' ? <p class="hint">Waiting until no live claim remains…</p> : null}
      <button type="button" onClick={props.onClose}>
        {phase.kind === 'waiting' ? 'Stop watching (the drain stays)' : 'Close'}
      </button>
    </section>
  );
}

import type { DashboardSnapshot } from '@mesh/protocol';
import { useState } from 'preact/hooks';
import { ago, api, shortId } from './api.ts';
import { DrainProgress, type DrainTarget } from './drain.tsx';

interface Pending {
  action: 'drain' | 'resume';
  target: DrainTarget;
}

const label = (t: DrainTarget) => (t.kind === 'fleet' ? 'the whole fleet' : `replica ${t.id}`);

/**
 * The drain and resume buttons of a replica ("Drain", "Resume") or of the
 * fleet ("Drain fleet", "Resume fleet"): each asks for a confirmation first.
 */
function DrainResumeButtons(props: { target: DrainTarget; ask: (p: Pending) => void }) {
  const { target, ask } = props;
  const suffix = target.kind === 'fleet' ? ' fleet' : '';
  return (
    <>
      {(['drain', 'resume'] as const).map((action) => (
        <button key={action} type="button" data-action={action} onClick={() => ask({ action, target })}>
          {`${action === 'drain' ? 'Drain' : 'Resume'}${suffix}`}
        </button>
      ))}
    </>
  );
}

/** Replicas, their drain state and live claims, and the drain / resume buttons. */
export function FleetPage(props: { snap: DashboardSnapshot }) {
  const { snap } = props;
  const [confirming, setConfirming] = useState<Pending | undefined>();
  const [progress, setProgress] = useState<DrainTarget | undefined>();
  const [message, setMessage] = useState<string | undefined>();

  const run = async (p: Pending) => {
    setConfirming(undefined);
    setMessage(undefined);
    if (p.action === 'drain') {
      setProgress(p.target);
      return;
    }
    const path =
      p.target.kind === 'fleet' ? '/fleet/drain' : `/replicas/${encodeURIComponent(p.target.id)}/drain`;
    try {
      const res = await api<{ status: number; body: unknown }>(path, 'DELETE');
      setMessage(
        res.status === 200
          ? `Resumed ${label(p.target)}: claims are handed out again.`
          : `Resume of ${label(p.target)} failed: HTTP ${res.status} ${JSON.stringify(res.body)}`,
      );
    } catch (err) {
      setMessage(`Resume of ${label(p.target)} failed: ${(err as Error).message}`);
    }
  };

  const fleet = snap.fleet_drain;
  return (
    <div>
      <div class="cards">
        <div class="card">
          <span class="k">Replicas live</span>
          <span class="v">{snap.replicas.filter((r) => r.state === 'live').length}</span>
        </div>
        <div class="card">
          <span class="k">Live claims</span>
          <span class="v" data-testid="fleet-live-claims">
            {snap.live_claims}
          </span>
        </div>
        <div class={`card ${fleet.draining ? 'draining' : ''}`}>
          <span class="k">Fleet drain</span>
          <span class="v">{fleet.draining ? `draining since ${ago(fleet.since)}` : 'off'}</span>
        </div>
        <div class="card actions">
          <DrainResumeButtons target={{ kind: 'fleet' }} ask={setConfirming} />
        </div>
      </div>
      {confirming ? (
        <div class="confirm" role="dialog" aria-label="confirm">
          <p>
            {confirming.action === 'drain'
              ? `Drain ${label(confirming.target)}? No new claims will be handed out ${confirming.target.kind === 'fleet' ? 'anywhere in the fleet (survives restarts)' : 'by it'}; running jobs finish.`
              : `Resume ${label(confirming.target)}? It hands out claims again.`}
          </p>
          <button type="button" class="primary" onClick={() => run(confirming)}>
            Yes, {confirming.action}
          </button>
          <button type="button" onClick={() => setConfirming(undefined)}>
            Cancel
          </button>
        </div>
      ) : null}
      {progress ? <DrainProgress target={progress} onClose={() => setProgress(undefined)} /> : null}
      {message ? <p class="message">{message}</p> : null}
      <table class="grid" data-testid="replicas">
        <thead>
          <tr>
            <th>Replica</th>
            <th>Version</th>
            <th>Schema</th>
            <th>Booted</th>
            <th>State</th>
            <th>Draining</th>
            <th>Live claims</th>
            <th>Last seen</th>
            <th>Boot</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {snap.replicas.map((r) => (
            <tr
              key={r.replica_id}
              data-replica={r.replica_id}
              data-state={r.state}
              data-draining={String(r.draining)}
            >
              <td>
                {r.replica_id}
                {r.replica_id === snap.served_by.replica_id ? <span class="tag">this page</span> : null}
              </td>
              <td>{r.version}</td>
              <td>{r.schema_version}</td>
              <td>{ago(r.started_at)}</td>
              <td>
                <span class={`state ${r.state}`}>{r.state}</span>
              </td>
              <td>{r.draining ? <span class="state draining">draining</span> : 'no'}</td>
              <td class="num">{r.live_claims}</td>
              <td>{ago(r.last_seen_at)}</td>
              <td class="mono">{shortId(r.boot_id)}</td>
              <td>
                {r.state === 'live' ? (
                  <DrainResumeButtons target={{ kind: 'replica', id: r.replica_id }} ask={setConfirming} />
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

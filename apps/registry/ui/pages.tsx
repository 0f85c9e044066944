import type { AgentInfo, DashboardSnapshot } from '@mesh/protocol';
import { useState } from 'preact/hooks';
import { ago } from './api.ts';

const countBy = (values: string[]) =>
  [...values.reduce((m, v) => m.set(v, (m.get(v) ?? 0) + 1), new Map<string, number>())].sort((a, b) =>
    a[0].localeCompare(b[0], undefined, { numeric: true }),
  );

/** Versions in the fleet and among agents, schema verdicts, rolling-upgrade progress. */
export function UpgradePage(props: { snap: DashboardSnapshot }) {
  const { snap } = props;
  const live = snap.replicas.filter((r) => r.state === 'live');
  const versions = countBy(live.map((r) => r.version));
  const sdk = countBy(snap.agents.list.map((a) => a.sdk_version ?? 'legacy (no X-Mesh-Sdk-Version)'));
  const newest = [...versions].map(([v]) => v).pop();
  const upgraded = live.filter((r) => r.version === newest).length;
  return (
    <div>
      <h2>Registry versions</h2>
      {versions.length > 1 ? (
        <div class="upgrade-progress" data-testid="rolling-upgrade">
          <p>
            Rolling upgrade in progress: {upgraded} of {live.length} live replicas run {newest}.
          </p>
          <progress max={live.length} value={upgraded} />
        </div>
      ) : (
        <p>One version in the fleet{newest ? `: ${newest}` : ''}; no upgrade under way.</p>
      )}
      <ul class="versions">
        {versions.map(([v, n]) => (
          <li key={v}>
            <b>{v}</b>: {n} live replica(s)
          </li>
        ))}
      </ul>
      <h2>Schema compatibility</h2>
      <p>
        Database schema version {snap.schema.database_version} ({snap.schema.migrations.length} migrations
        applied).
      </p>
      <table class="grid">
        <thead>
          <tr>
            <th>Replica</th>
            <th>Version</th>
            <th>Knows schema</th>
            <th>State</th>
            <th>Verdict</th>
          </tr>
        </thead>
        <tbody>
          {snap.replicas.map((r) => (
            <tr key={r.replica_id}>
              <td>{r.replica_id}</td>
              <td>{r.version}</td>
              <td>{r.schema_version}</td>
              <td>{r.state}</td>
              <td>
                <span
                  class={`state ${r.schema_verdict === 'compatible' ? 'live' : 'stale'}`}
                  data-verdict={r.schema_verdict}
                >
                  {r.schema_verdict}
                </span>
                {r.schema_reason ? <div class="hint">{r.schema_reason}</div> : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Migrations applied</h3>
      <table class="grid">
        <thead>
          <tr>
            <th>Migration</th>
            <th>Compatibility</th>
            <th>Release</th>
            <th>Oldest compatible</th>
          </tr>
        </thead>
        <tbody>
          {snap.schema.migrations.map((m) => (
            <tr key={m.name}>
              <td class="mono">{m.name}</td>
              <td>{m.compatibility ?? 'undeclared'}</td>
              <td>{m.release ?? '—'}</td>
              <td>{m.oldest_compatible ?? '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Agent SDK versions</h2>
      <ul class="versions">
        {sdk.map(([v, n]) => (
          <li key={v}>
            <b>{v}</b>: {n} agent(s)
          </li>
        ))}
        {sdk.length === 0 ? <li>No agents registered.</li> : null}
      </ul>
    </div>
  );
}

/** Agents: status, capabilities, dependencies, heartbeat, SDK; a detail panel. */
export function AgentsPage(props: { snap: DashboardSnapshot }) {
  const { list, truncated, read_at } = props.snap.agents;
  const [selected, setSelected] = useState<string | undefined>();
  const agent = list.find((a) => a.id === selected);
  return (
    <div>
      <p class="hint">
        {list.length} agent(s){truncated ? ' (list truncated)' : ''}, read {ago(read_at)}.
      </p>
      <table class="grid" data-testid="agents">
        <thead>
          <tr>
            <th>Name</th>
            <th>Status</th>
            <th>Capabilities</th>
            <th>Dependencies</th>
            <th>Last heartbeat</th>
            <th>SDK</th>
          </tr>
        </thead>
        <tbody>
          {list.map((a) => (
            <tr key={a.id} data-agent={a.id} class={a.id === selected ? 'selected' : ''}>
              <td>
                <button type="button" class="link" onClick={() => setSelected(a.id)}>
                  {a.name}
                </button>
              </td>
              <td>
                <span class={`state ${a.status === 'healthy' ? 'live' : 'stale'}`}>{a.status}</span>
              </td>
              <td>{(a.capabilities ?? []).map((c) => c.name).join(', ') || '—'}</td>
              <td>
                {a.dependencies_resolved}/{a.total_dependencies} resolved
              </td>
              <td>{ago(a.last_seen)}</td>
              <td>{a.sdk_version ?? 'legacy'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {agent ? <AgentDetail agent={agent} onClose={() => setSelected(undefined)} /> : null}
    </div>
  );
}

function AgentDetail(props: { agent: AgentInfo; onClose: () => void }) {
  const a = props.agent;
  return (
    <section class="detail" data-testid="agent-detail">
      <h3>{a.name}</h3>
      <dl>
        <dt>Id</dt>
        <dd class="mono">{a.id}</dd>
        <dt>Endpoint</dt>
        <dd class="mono">{a.endpoint}</dd>
        <dt>Version</dt>
        <dd>{a.version || '—'}</dd>
        <dt>Registered</dt>
        <dd>{ago(a.created_at)}</dd>
      </dl>
      <h4>Capabilities</h4>
      <ul>
        {(a.capabilities ?? []).map((c) => (
          <li key={c.function_name}>
            <b>{c.name}</b> ({c.function_name}, {c.version}){' '}
            {c.available ? '' : `unavailable: ${c.unavailable_reason ?? ''}`}
          </li>
        ))}
      </ul>
      <h4>Dependencies</h4>
      <ul>
        {(a.dependency_resolutions ?? []).map((d, i) => (
          <li key={`${d.function_name}/${d.capability}/${i}`}>
            {d.function_name} → <b>{d.capability}</b>:{' '}
            <span class={`state ${d.status === 'available' ? 'live' : 'stale'}`}>{d.status}</span>
            {d.provider_agent_id ? ` via ${d.provider_agent_id}` : ''}
          </li>
        ))}
        {(a.dependency_resolutions ?? []).length === 0 ? <li>None declared.</li> : null}
      </ul>
      <button type="button" onClick={props.onClose}>
        Close
      </button>
    </section>
  );
}

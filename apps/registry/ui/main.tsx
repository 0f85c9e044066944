import type { DashboardSnapshot } from '@mesh/protocol';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, HttpError, openStream, token } from './api.ts';
import { FleetPage } from './fleet.tsx';
import { JobsPage } from './jobs.tsx';
import { AgentsPage, UpgradePage } from './pages.tsx';
import { ThroughputPage } from './throughput.tsx';
import './style.css';

const pages = ['fleet', 'upgrade', 'agents', 'jobs', 'throughput'] as const;
type Page = (typeof pages)[number];

const pageFromHash = (): Page => {
  const h = location.hash.replace(/^#\/?/, '') as Page;
  return pages.includes(h) ? h : 'fleet';
};

function Login(props: { onDone: () => void; failed: boolean }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | undefined>(
    props.failed ? 'This registry needs its admin token.' : undefined,
  );
  const submit = async (e: Event) => {
    e.preventDefault();
    token.set(value);
    try {
      await api('/session');
      props.onDone();
    } catch (err) {
      token.clear();
      setError(err instanceof HttpError && err.status === 401 ? 'Wrong token.' : (err as Error).message);
    }
  };
  return (
    <form class="login" onSubmit={submit}>
      <h1>mesh-registry dashboard</h1>
      <p>This registry requires its admin token (kept in this tab's session storage only).</p>
      <label>
        Admin token{' '}
        <input
          type="password"
          name="token"
          autocomplete="off"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
        />
      </label>
      <button type="submit">Sign in</button>
      {error ? (
        <p class="loud" role="alert">
          {error}
        </p>
      ) : null}
    </form>
  );
}

function App() {
  const [page, setPage] = useState<Page>(pageFromHash());
  const [snap, setSnap] = useState<DashboardSnapshot | undefined>();
  const [state, setState] = useState<'connecting' | 'live' | 'unauthorized' | 'down'>('connecting');
  const [generation, setGeneration] = useState(0);

  useEffect(() => {
    const onHash = () => setPage(pageFromHash());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => openStream({ snapshot: setSnap, state: setState }), [generation]);

  if (state === 'unauthorized') {
    return <Login failed={token.get() !== ''} onDone={() => setGeneration(generation + 1)} />;
  }
  return (
    <div class="shell">
      <header>
        <h1>mesh-registry</h1>
        <nav>
          {pages.map((p) => (
            <a key={p} href={`#/${p}`} class={p === page ? 'active' : ''}>
              {p[0]?.toUpperCase()}
              {p.slice(1)}
            </a>
          ))}
        </nav>
        <span class={`conn ${state}`} data-testid="connection">
          {state === 'live' ? (snap?.database === 'unreachable' ? 'database unreachable' : 'live') : state}
        </span>
        {snap ? (
          <span class="hint">
            via {snap.served_by.replica_id} {snap.served_by.version}
          </span>
        ) : null}
        {token.get() ? (
          <button
            type="button"
            onClick={() => {
              token.clear();
              setGeneration(generation + 1);
            }}
          >
            Sign out
          </button>
        ) : null}
      </header>
      <main data-page={page}>
        {!snap ? (
          <p>Connecting…</p>
        ) : page === 'fleet' ? (
          <FleetPage snap={snap} />
        ) : page === 'upgrade' ? (
          <UpgradePage snap={snap} />
        ) : page === 'agents' ? (
          <AgentsPage snap={snap} />
        ) : page === 'jobs' ? (
          <JobsPage snap={snap} />
        ) : (
          <ThroughputPage snap={snap} />
        )}
      </main>
    </div>
  );
}

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(<App />, root);
}

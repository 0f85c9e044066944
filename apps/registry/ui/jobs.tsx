import type { DashboardJob, DashboardSnapshot, Job, JobEvent, ListJobsResponse } from '@mesh/protocol';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, shortId } from './api.ts';

const statuses = ['working', 'input_required', 'completed', 'failed', 'cancelled'] as const;
/** A filtered or paged list re-reads at most this often while jobs change (the unfiltered page is live for free). */
const refetchMs = 5_000;

type Row = Pick<
  DashboardJob,
  | 'job_id'
  | 'capability'
  | 'status'
  | 'owner_instance_id'
  | 'attempt_count'
  | 'max_retries'
  | 'progress'
  | 'submitted_by'
  | 'submitted_at'
>;

const fromJob = (j: Job): Row => ({
  job_id: j.id,
  capability: j.capability,
  status: j.status,
  owner_instance_id: j.owner_instance_id,
  attempt_count: j.attempt_count,
  max_retries: j.max_retries,
  progress: j.progress,
  submitted_by: j.submitted_by,
  submitted_at: j.submitted_at * 1000,
});

/** Counts, a live list with filters and keyset paging, a job's detail with its events. */
export function JobsPage(props: { snap: DashboardSnapshot }) {
  const { snap } = props;
  const [status, setStatus] = useState('');
  const [capability, setCapability] = useState('');
  const [pages, setPages] = useState<string[]>([]); // cursors of the pages shown after the first
  const [rows, setRows] = useState<Row[] | undefined>();
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | undefined>();
  const [selected, setSelected] = useState<string | undefined>();
  const lastFetch = useRef(0);
  const filtered = status !== '' || capability !== '' || pages.length > 0;
  const cursor = pages.at(-1);

  // The newest page without filters comes with every snapshot; anything else is read on demand.
  const recentKey = snap.jobs.recent.map((j) => `${j.job_id}:${j.status}:${j.progress}`).join(',');
  useEffect(() => {
    if (!filtered) {
      setRows(undefined);
      return;
    }
    if (rows && Date.now() - lastFetch.current < refetchMs) return;
    lastFetch.current = Date.now();
    const q = new URLSearchParams({ limit: '50' });
    if (status) q.set('status', status);
    if (capability) q.set('capability', capability);
    if (cursor) q.set('cursor', cursor);
    api<ListJobsResponse>(`/jobs?${q}`)
      .then((page) => {
        setRows(page.jobs.map(fromJob));
        setNext(page.next_cursor);
        setError(undefined);
      })
      .catch((err: Error) => setError(err.message));
  }, [filtered, status, capability, cursor, filtered ? recentKey : '']);

  const shown: Row[] = filtered ? (rows ?? []) : snap.jobs.recent;
  const capabilities = [...new Set(snap.jobs.counts.map((c) => c.capability))].sort();
  const resetPaging = () => {
    setPages([]);
    setRows(undefined);
    lastFetch.current = 0;
  };

  return (
    <div>
      <h2>Counts</h2>
      <table class="grid" data-testid="job-counts">
        <thead>
          <tr>
            <th>Capability</th>
            {statuses.map((s) => (
              <th key={s}>{s}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {capabilities.map((cap) => (
            <tr key={cap}>
              <td>{cap}</td>
              {statuses.map((s) => (
                <td key={s} class="num">
                  {snap.jobs.counts.find((c) => c.capability === cap && c.status === s)?.n ?? 0}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Jobs</h2>
      <div class="filters">
        <label>
          Status{' '}
          <select
            value={status}
            onChange={(e) => {
              setStatus((e.target as HTMLSelectElement).value);
              resetPaging();
            }}
          >
            <option value="">any</option>
            {statuses.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Capability{' '}
          <input
            value={capability}
            placeholder="any"
            onChange={(e) => {
              setCapability((e.target as HTMLInputElement).value.trim());
              resetPaging();
            }}
          />
        </label>
        <span class="hint">
          {filtered ? 'filtered: refreshed every few seconds while jobs change' : 'live'}
        </span>
      </div>
      {error ? <p class="loud">{error}</p> : null}
      <table class="grid" data-testid="jobs">
        <thead>
          <tr>
            <th>Job</th>
            <th>Capability</th>
            <th>Status</th>
            <th>Owner</th>
            <th>Attempts</th>
            <th>Progress</th>
            <th>Submitted</th>
            <th>By</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((j) => (
            <tr key={j.job_id} data-job={j.job_id} class={j.job_id === selected ? 'selected' : ''}>
              <td>
                <button type="button" class="link mono" onClick={() => setSelected(j.job_id)}>
                  {shortId(j.job_id)}
                </button>
              </td>
              <td>{j.capability}</td>
              <td>
                <span class={`status ${j.status}`}>{j.status}</span>
              </td>
              <td class="mono">{j.owner_instance_id ?? '—'}</td>
              <td class="num">
                {j.attempt_count}/{j.max_retries + 1}
              </td>
              <td class="num">{j.progress === null ? '—' : `${Math.round(j.progress * 100)}%`}</td>
              <td>{new Date(j.submitted_at).toLocaleTimeString()}</td>
              <td>{j.submitted_by}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="paging">
        {pages.length > 0 ? (
          <button type="button" onClick={() => setPages(pages.slice(0, -1))}>
            Newer
          </button>
        ) : null}
        {(filtered ? next : snap.jobs.recent.length >= 50) ? (
          <button
            type="button"
            onClick={() => {
              lastFetch.current = 0;
              const last = shown.at(-1);
              if (filtered && next) setPages([...pages, next]);
              else if (last) {
                // The live page's last row as a cursor (GET /jobs's keyset: submitted_at µs, id).
                const us = 'submitted_us' in last ? BigInt(last.submitted_us as string) : 0n;
                setPages([
                  btoa(`${us * 1000n}:${last.job_id}`)
                    .replace(/\+/g, '-')
                    .replace(/\//g, '_')
                    .replace(/=+$/, ''),
                ]);
              }
            }}
          >
            Older
          </button>
        ) : null}
      </div>
      {selected ? <JobDetail id={selected} tick={snap.at} onClose={() => setSelected(undefined)} /> : null}
    </div>
  );
}

function JobDetail(props: { id: string; tick: string; onClose: () => void }) {
  const [data, setData] = useState<{ job: Job; events: JobEvent[] } | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [note, setNote] = useState<string | undefined>();
  const [confirm, setConfirm] = useState<'cancel' | 'reclaim' | undefined>();
  const live = !data || data.job.status === 'working' || data.job.status === 'input_required';
  // Re-read while the job is live, at most every two seconds.
  const last = useRef(0);
  useEffect(() => {
    if (!live && data?.job.id === props.id) return;
    if (Date.now() - last.current < 2_000 && data?.job.id === props.id) return;
    last.current = Date.now();
    api<{ job: Job; events: JobEvent[] }>(`/jobs/${encodeURIComponent(props.id)}`)
      .then((d) => {
        setData(d);
        setError(undefined);
      })
      .catch((err: Error) => setError(err.message));
  }, [props.id, props.tick]);

  const act = async (what: 'cancel' | 'reclaim') => {
    setConfirm(undefined);
    try {
      const r = await api<unknown>(`/jobs/${encodeURIComponent(props.id)}/${what}`, 'POST', {});
      setNote(`${what}: ${JSON.stringify(r)}`);
      last.current = 0;
    } catch (err) {
      setNote(`${what} refused: ${(err as Error).message}`);
    }
  };

  return (
    <section class="detail" data-testid="job-detail">
      <h3 class="mono">Job {props.id}</h3>
      {error ? <p class="loud">{error}</p> : null}
      {data ? (
        <>
          <dl>
            <dt>Status</dt>
            <dd>
              <span class={`status ${data.job.status}`}>{data.job.status}</span>
            </dd>
            <dt>Capability</dt>
            <dd>{data.job.capability}</dd>
            <dt>Owner</dt>
            <dd class="mono">
              {data.job.owner_instance_id ?? '—'} (epoch {data.job.claim_epoch})
            </dd>
            <dt>Error</dt>
            <dd>{data.job.error ?? '—'}</dd>
          </dl>
          <h4>Payload</h4>
          <pre>{JSON.stringify(data.job.submitted_payload, null, 2)}</pre>
          {data.job.result !== null && data.job.result !== undefined ? (
            <>
              <h4>Result</h4>
              <pre>{JSON.stringify(data.job.result, null, 2)}</pre>
            </>
          ) : null}
          <h4>Events</h4>
          <table class="grid" data-testid="job-events">
            <thead>
              <tr>
                <th>Seq</th>
                <th>Type</th>
                <th>Payload</th>
                <th>At</th>
              </tr>
            </thead>
            <tbody>
              {data.events.map((e) => (
                <tr key={e.seq} data-event={e.type}>
                  <td class="num">{e.seq}</td>
                  <td>{e.type}</td>
                  <td class="mono">{JSON.stringify(e.payload)}</td>
                  <td>{new Date(e.created_at * 1000).toLocaleTimeString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}
      {confirm ? (
        <div class="confirm" role="dialog" aria-label="confirm">
          <p>
            {confirm === 'cancel'
              ? 'Cancel this job? Its owner is told to stop.'
              : 'Force reclaim this job? Its owner loses it; it is re-queued if retries remain.'}
          </p>
          <button type="button" class="primary" onClick={() => act(confirm)}>
            Yes, {confirm}
          </button>
          <button type="button" onClick={() => setConfirm(undefined)}>
            No
          </button>
        </div>
      ) : null}
      {note ? <p class="message">{note}</p> : null}
      <div class="actions">
        <button type="button" disabled={!live} onClick={() => setConfirm('cancel')}>
          Cancel job
        </button>
        <button type="button" disabled={!live} onClick={() => setConfirm('reclaim')}>
          Reclaim
        </button>
        <button type="button" onClick={props.onClose}>
          Close
        </button>
      </div>
    </section>
  );
}

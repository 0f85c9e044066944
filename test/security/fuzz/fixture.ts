import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import { reportSvc, timeSvc } from '../../support/sample-agents.ts';
import type { Pools } from './arbitraries.ts';

// biome-ignore lint/suspicious/noExplicitAny: the fixture reads arbitrary wire bodies
type Send = (method: string, path: string, body?: unknown) => Promise<{ status: number; body: any }>;

/**
 * Stored state the fuzzer aims at: two agents, and jobs in every state
 * (working unclaimed, working claimed, input_required, completed, failed,
 * cancelled), one with an event. No job has a deadline or max_duration and
 * leases are long, so no sweep moves these rows during the run.
 */
export async function storeFixture(send: Send): Promise<Omit<Pools, 'replicaIds' | 'tokens'>> {
  for (const agent of [timeSvc, reportSvc]) {
    const res = await send('POST', '/heartbeat', { ...agent, version: '1.0.0', runtime: 'python' });
    if (res.status !== 200) throw new Error(`fixture: register ${agent.agent_id}: ${res.status}`);
  }
  const jobIds: string[] = [];
  for (let i = 0; i < 9; i++) {
    const res = await send('POST', '/jobs', {
      capability: i < 6 ? 'fuzz-cap' : 'time_service',
      submitted_by: 'fixture',
      submitted_payload: { i, nested: { list: [1, 2, 3] } },
      max_retries: 2,
    });
    if (res.status !== 201) throw new Error(`fixture: submit: ${res.status}`);
    jobIds.push(res.body.id);
  }
  const claimed = (
    await send('POST', '/jobs/claim', { capability: 'fuzz-cap', instance_id: 'fuzz-worker-1', max_jobs: 5 })
  ).body.claimed as { id: string; claim_epoch: number }[];
  if (claimed.length !== 5) throw new Error(`fixture: claimed ${claimed.length} of 5`);
  const [done, failed, asking, held] = claimed as [
    (typeof claimed)[0],
    (typeof claimed)[0],
    (typeof claimed)[0],
    (typeof claimed)[0],
  ];
  const batch = await send('POST', '/jobs/batch', {
    instance_id: 'fuzz-worker-1',
    deltas: [
      { id: done.id, claim_epoch: done.claim_epoch, status: 'completed', result: { ok: true } },
      { id: failed.id, claim_epoch: failed.claim_epoch, status: 'failed', error: 'fixture failure' },
      { id: asking.id, claim_epoch: asking.claim_epoch, status: 'input_required', progress: 0.5 },
      { id: held.id, claim_epoch: held.claim_epoch, progress: 0.25, progress_message: 'halfway' },
    ],
  });
  if (batch.body.accepted !== 4) throw new Error(`fixture: batch ${JSON.stringify(batch.body)}`);
  const event = await send('POST', `/jobs/${held.id}/events`, { type: 'progress', payload: { step: 1 } });
  if (event.status !== 200) throw new Error(`fixture: event ${event.status}`);
  const cancel = await send('POST', `/jobs/${jobIds[7]}/cancel`, { reason: 'fixture' });
  if (cancel.status !== 200) throw new Error(`fixture: cancel ${cancel.status}`);
  return {
    jobIds,
    agentIds: [timeSvc.agent_id, reportSvc.agent_id, 'missing-agent-1'],
    instanceIds: ['fuzz-worker-1', 'fuzz-worker-2', ''],
    capabilities: ['fuzz-cap', 'time_service', 'report_service', 'nobody-provides-this'],
    epochs: claimed.map((c) => c.claim_epoch),
  };
}

/**
 * One digest of what a rejected request must never change, part by part
 * (`jobs:<md5> events:<md5> … event_count:<n>`, so a failure names the part): the fixture's
 * rows in full (jobs, their events, agents, their capabilities), every
 * registry_settings row, every registry_replicas column but `last_seen_at`
 * (the registry's own heartbeat moves it every second), and the number of
 * jobs, agents and events other than those the sweeps write themselves
 * (`stale`, `deadline_exceeded`; `cancelled` too): a rejected request inserts nothing. Rows that the
 * fuzzer's own accepted requests created are left out of the full comparison:
 * their leases and deadlines legitimately move under the sweeps (they still count).
 */
export function stateDigest(url: string, jobIds: string[], agentIds: string[]) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const digest = async (): Promise<string> => {
    const [row] = await sql`
      select concat_ws(' ',
        'jobs:' || md5(coalesce((select string_agg(j::text, ',' order by j.id) from jobs j where j.id = any(${jobIds}::uuid[])), '')),
        'events:' || md5(coalesce((select string_agg(e::text, ',' order by e.id) from job_events e where e.job_id = any(${jobIds}::uuid[])), '')),
        'agents:' || md5(coalesce((select string_agg(a::text, ',' order by a.agent_id) from agents a where a.agent_id = any(${agentIds}::text[])), '')),
        'capabilities:' || md5(coalesce((select string_agg(c::text, ',' order by c.id) from agent_capabilities c where c.agent_id = any(${agentIds}::text[])), '')),
        'settings:' || md5(coalesce((select string_agg(s::text, ',' order by s.key) from registry_settings s), '')),
        'replicas:' || md5(coalesce((select string_agg(concat_ws(';', r.replica_id, r.boot_id, r.version, r.schema_version, r.main_url,
            r.admin_url, r.started_at, r.draining, r.draining_since, r.stopped_at), ',' order by r.replica_id)
          from registry_replicas r), '')),
        'job_count:' || (select count(*) from jobs), 'agent_count:' || (select count(*) from agents),
        'event_count:' || (select count(*) from job_events where type not in ('cancelled', 'stale', 'deadline_exceeded'))
      ) as digest`;
    return row?.digest as string;
  };
  return { digest, close: () => sql.end() };
}

/** Resident memory of a process, in MB (Linux). */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
  return Math.round(kb / 1024);
}

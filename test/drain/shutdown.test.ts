import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';

const db = useTestDatabase();

describe('SIGTERM under load (real processes)', () => {
  it('answers no request with a 5xx and loses no job while a replica stops mid-stream', async () => {
    const a = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'stop-a',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    });
    const b = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'stop-b',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    });
    const total = 300;
    const statuses: number[] = [];
    let refused = 0;
    /** Sends to the first replica that accepts the connection (A until it stops, then B). */
    type Answer = { claimed?: { id: string; claim_epoch: number }[]; accepted?: number };
    const send = async (
      path: string,
      body: unknown,
    ): Promise<{ status: number; json: Answer } | undefined> => {
      for (const r of [a, b] as RegistryProcess[]) {
        try {
          const res = await fetch(`${r.url}${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
          });
          statuses.push(res.status);
          return { status: res.status, json: (await res.json()) as Answer };
        } catch {
          refused += 1; // connection refused or reset: the client moves on, no answer was given
        }
      }
      return undefined;
    };
    for (let i = 0; i < total; i++) {
      expect(
        (await send('/jobs', { capability: 'term', submitted_by: 's', submitted_payload: { i } }))?.status,
      ).toBe(201);
    }
    let completed = 0;
    let stopping: Promise<unknown> | undefined;
    const worker = async (w: number) => {
      while (completed < total) {
        const res = await send('/jobs/claim', { capability: 'term', instance_id: `w${w}` });
        const job = res?.json?.claimed?.[0];
        if (!job) {
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        // Stop A in the middle of the stream.
        if (completed >= 100 && !stopping) stopping = a.stop();
        const done = await send('/jobs/batch', {
          instance_id: `w${w}`,
          deltas: [{ id: job.id, claim_epoch: job.claim_epoch, status: 'completed', result: { w } }],
        });
        if (done?.json?.accepted === 1) completed += 1;
      }
    };
    await Promise.all(Array.from({ length: 6 }, (_, w) => worker(w)));
    const exit = await stopping;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
    expect(refused).toBeGreaterThan(0); // A really went away mid-stream
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [row] = await sql<{ completed: number; twice: number }[]>`
        select count(*) filter (where status = 'completed')::int as completed,
               count(*) filter (where claim_epoch > 1)::int as twice
        from jobs where capability = 'term'`;
      expect(row).toEqual({ completed: total, twice: 0 });
      const [stopped] = await sql<{ stopped: boolean }[]>`
        select stopped_at is not null as stopped from registry_replicas where replica_id = 'stop-a'`;
      expect(stopped).toEqual({ stopped: true });
    } finally {
      await sql.end();
    }
  }, 120_000);

  it('serves Prometheus metrics for requests, claims, deltas, live claims and drain', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'metrics' });
    const post = (path: string, body: unknown) =>
      fetch(`${r.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }).then((x) => x.json() as Promise<{ claimed: { id: string }[] }>);
    await post('/jobs', { capability: 'm', submitted_by: 's', submitted_payload: {} });
    const { claimed } = await post('/jobs/claim', { capability: 'm', instance_id: 'w' });
    await post('/jobs/claim', { capability: 'm', instance_id: 'w' });
    await post('/jobs/batch', {
      instance_id: 'w',
      deltas: [{ id: claimed[0]?.id, claim_epoch: 9, progress: 1 }],
    });
    // Database-backed gauges come from the replica's background read (issue 20): wait for one.
    let res = await fetch(`${r.url}/metrics`);
    for (let i = 0; i < 100 && !/mesh_live_claims\{scope="replica"\} 1/.test(await res.clone().text()); i++) {
      await new Promise((w) => setTimeout(w, 100));
      res = await fetch(`${r.url}/metrics`);
    }
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/mesh_http_requests_total\{route="\/jobs\/claim",method="POST",status="200"\} 2/);
    expect(text).toMatch(
      /mesh_http_request_duration_seconds_bucket\{le="[^"]+",route="\/jobs",method="POST"\} 1/,
    );
    expect(text).toMatch(/mesh_claims_total\{outcome="claimed"\} 1/);
    expect(text).toMatch(/mesh_claims_total\{outcome="empty"\} 1/);
    expect(text).toMatch(/mesh_deltas_total\{outcome="claim_superseded"\} 1/);
    expect(text).toMatch(/mesh_live_claims\{scope="replica"\} 1/);
    expect(text).toMatch(/mesh_draining 0/);
  });
});

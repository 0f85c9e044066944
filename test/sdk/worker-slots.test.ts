import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { JobWorker, RegistryClient, type WorkerNotice } from '@mesh/sdk';
import { spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { until } from '../support/until.ts';

/**
 * A worker's slot frees when its handler returns (packages/sdk/src/worker.ts,
 * issue 17): the next claim goes out while the finished job's completion is
 * still on its way, every job is still committed, `stop()` waits for the
 * completions in flight, and at most twice `concurrency` jobs are held.
 * A proxy in front of a real registry holds each completion's answer.
 * The registry runs with `--claim-beside-deltas=false`: this is the worker
 * against a registry where its claim cannot ride in its completion's request
 * (0.1.0, or a registry with the feature off; the riding path is
 * test/sdk/claim-beside-deltas.test.ts).
 */
const db = useTestDatabase();
const holdMs = 600;

/** Forwards to `target`; answers to completions (terminal deltas) are held `holdMs` and timed. */
async function slowCompletions(target: string) {
  const answered = new Map<string, number>();
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    const upstream = await fetch(`${target}${req.url}`, {
      method: req.method,
      headers: { 'content-type': 'application/json' },
      body: text && req.method !== 'GET' && req.method !== 'HEAD' ? text : undefined,
    });
    const answer = await upstream.text();
    const completed =
      req.url === '/jobs/batch'
        ? (JSON.parse(text).deltas as { id: string; status?: string }[]).filter(
            (d) => d.status === 'completed',
          )
        : [];
    if (completed.length > 0) await new Promise((r) => setTimeout(r, holdMs));
    res.writeHead(upstream.status, { 'content-type': 'application/json' });
    res.end(answer, () => {
      for (const d of completed) answered.set(d.id, performance.now());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    answered,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('worker slots', () => {
  it('free when the handler returns: the next job starts while the last completion is in flight', async () => {
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'slots',
      env: { MESH_CLAIM_BESIDE_DELTAS: 'false' },
    });
    const proxy = await slowCompletions(r.url);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const submitter = new RegistryClient({ urls: [r.url] });
      const ids: string[] = [];
      for (let i = 0; i < 4; i++)
        ids.push(
          (await submitter.submit({ capability: 'slots', submitted_by: 't', submitted_payload: { i } })).id,
        );
      const started = new Map<string, number>();
      const notices: WorkerNotice[] = [];
      let held = 0;
      let mostHeld = 0;
      const worker = new JobWorker({
        client: new RegistryClient({ urls: [proxy.url] }),
        instanceId: 'slots-1',
        capability: 'slots',
        concurrency: 1,
        longPollMs: 0,
        maxIdleMs: 100,
        handler: async ({ id }) => {
          started.set(id, performance.now());
          return { ok: true };
        },
        onNotice: (n) => {
          notices.push(n);
          if (n.type === 'claimed') mostHeld = Math.max(mostHeld, ++held);
          if (n.type === 'settled') held -= 1;
        },
      });
      worker.start();
      await until('every job to start', () => started.size === 4, 20_000);
      // Stopping waits for the completions still held by the proxy.
      await worker.stop(10_000);
      const rows = await sql<{ status: string }[]>`select status from jobs where id = any(${ids}::uuid[])`;
      expect(rows.map((x) => x.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
      expect(notices.filter((n) => n.type === 'settled' && n.committed)).toHaveLength(4);
      // The second job started while the first one's completion was held
      // (600 ms) by the proxy: its slot was freed when its handler returned…
      const order = ids
        .map((id) => ({ start: started.get(id) as number, answered: proxy.answered.get(id) as number }))
        .sort((a, b) => a.start - b.start);
      expect(order[1]?.start).toBeLessThan(order[0]?.answered as number);
      // …but a job two places back was always answered first (two held at most).
      for (let i = 2; i < order.length; i++) {
        expect(order[i]?.start).toBeGreaterThanOrEqual(order[i - 2]?.answered as number);
      }
      // Twice the concurrency, counted from the worker's own notices.
      expect(mostHeld).toBe(2);
    } finally {
      await sql.end();
      await proxy.close();
      await r.stop();
    }
  }, 60_000);
});

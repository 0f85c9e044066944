import { JobWorker, RegistryClient, waitForJob } from '@mesh/sdk';
import { adminUrl, createDatabase, spawnRegistry, startMcpRegistry, withDatabase } from '@mesh/testkit';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The same SDK scenarios against our registry and the real MCP Mesh registry
 * 3.7.1 (an older registry: no extensions, the SDK falls back to the 3.7 wire).
 */
const targets = [
  {
    name: 'ours',
    async start() {
      const db = await createDatabase(adminUrl());
      const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'sdk' });
      return {
        url: r.url,
        stop: async () => {
          await r.stop();
          await db.drop();
        },
      };
    },
  },
  {
    name: 'mcp-mesh-3.7.1',
    async start() {
      const db = await createDatabase(adminUrl(), { migrated: false });
      const r = await startMcpRegistry(withDatabase(adminUrl(), db.name));
      return {
        url: r.url,
        stop: async () => {
          await r.stop();
          await db.drop();
        },
      };
    },
  },
];

const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const s of stops) await s();
});

describe.each(targets)('SDK against $name', (target) => {
  let client: RegistryClient;
  const ready = (async () => {
    const started = await target.start();
    stops.push(started.stop);
    client = new RegistryClient({ urls: [started.url] });
  })();

  it('detects what the registry supports', async () => {
    await ready;
    const info = await client.info();
    expect(info.extended).toBe(target.name === 'ours');
    if (target.name !== 'ours') expect(info.version).toBe('1.0.0');
  });

  it('runs submitted jobs to completion, with progress, results and failures', async () => {
    await ready;
    const progressSeen: number[] = [];
    const worker = new JobWorker({
      client,
      instanceId: `worker-${target.name === 'ours' ? 'a' : 'b'}`,
      capability: 'sdk-echo',
      concurrency: 3,
      handler: async ({ payload, progress }) => {
        await progress(0.5, 'halfway');
        if (payload.fail) throw new Error('handler said no');
        return { echoed: payload.n };
      },
    });
    worker.start();
    try {
      const ids: string[] = [];
      for (let n = 0; n < 5; n++) {
        ids.push(
          (
            await client.submit({
              capability: 'sdk-echo',
              submitted_by: 'sdk-test',
              submitted_payload: { n },
            })
          ).id,
        );
      }
      const failing = (
        await client.submit({
          capability: 'sdk-echo',
          submitted_by: 'sdk-test',
          submitted_payload: { fail: true },
          max_retries: 0,
        })
      ).id;
      const done = await Promise.all(
        ids.map((id) =>
          waitForJob(client, id, {
            timeoutMs: 30_000,
            onProgress: (j) => progressSeen.push(j.progress ?? 0),
          }),
        ),
      );
      expect(done.map((j) => [j.status, j.result])).toEqual(ids.map((_, n) => ['completed', { echoed: n }]));
      expect(done.every((j) => j.claim_epoch === 1)).toBe(true);
      const failed = await waitForJob(client, failing, { timeoutMs: 30_000 });
      expect(failed).toMatchObject({ status: 'failed', error: 'handler said no' });
    } finally {
      await worker.stop();
    }
  });

  it('aborts a handler whose job is cancelled, and commits nothing for it', async () => {
    await ready;
    let aborted: string | undefined;
    let started: () => void = () => {};
    const running = new Promise<void>((r) => {
      started = r;
    });
    const worker = new JobWorker({
      client,
      instanceId: 'cancel-worker',
      capability: 'sdk-cancel',
      renewEveryMs: 200,
      handler: ({ signal }) =>
        new Promise((resolve) => {
          started();
          signal.addEventListener('abort', () => {
            aborted = String(signal.reason);
            resolve({ should: 'not be stored' });
          });
        }),
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'sdk-cancel',
        submitted_by: 't',
        submitted_payload: {},
      });
      await running;
      await client.cancel(id, 'user asked');
      const deadline = Date.now() + 10_000;
      while (!aborted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(aborted).toMatch(/cancelled|already_terminal/);
      const job = await client.getJob(id);
      expect(job).toMatchObject({ status: 'cancelled', result: null });
    } finally {
      await worker.stop();
    }
  });

  it('aborts a superseded execution (force reclaim) and lets the next claim complete the job once', async () => {
    await ready;
    const epochs: number[] = [];
    let first = true;
    const worker = new JobWorker({
      client,
      instanceId: 'reclaim-worker',
      capability: 'sdk-reclaim',
      renewEveryMs: 200,
      handler: ({ signal, claimEpoch }) =>
        new Promise((resolve) => {
          epochs.push(claimEpoch);
          if (!first) return resolve({ epoch: claimEpoch });
          first = false;
          signal.addEventListener('abort', () => resolve({ epoch: claimEpoch, stale: true }));
        }),
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'sdk-reclaim',
        submitted_by: 't',
        submitted_payload: {},
        max_retries: 2,
      });
      const deadline = Date.now() + 10_000;
      while (epochs.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await client.request('POST', `/jobs/${id}/reclaim`);
      const job = await waitForJob(client, id, { timeoutMs: 30_000 });
      expect(job).toMatchObject({ status: 'completed', result: { epoch: 2 }, claim_epoch: 2 });
      expect(epochs).toEqual([1, 2]);
    } finally {
      await worker.stop();
    }
  });
});

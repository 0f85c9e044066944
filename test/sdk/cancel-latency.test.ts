import { type JobAbortedError, JobWorker, RegistryClient, type WorkerNotice } from '@mesh/sdk';
import { spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { describe, expect, it } from 'vitest';

/**
 * Issue 19: a cancel reaches a busy handler at once, not at its next lease
 * renewal. The worker talks to replica A only; jobs are cancelled (and force
 * reclaimed) through replica B, so the news can only travel through
 * PostgreSQL (B's pg_notify, A's LISTEN) and A's answer to the worker's
 * `POST /jobs/signals` long-poll. Latency is printed, never asserted.
 */
describe('cancels and re-claims through another replica', () => {
  const db = useTestDatabase();

  it('reach the busy handler’s signal through the signals long-poll', async () => {
    const [a, b] = await Promise.all([
      spawnRegistry({ databaseUrl: db.url, replicaId: 'sig-a' }),
      spawnRegistry({ databaseUrl: db.url, replicaId: 'sig-b' }),
    ]);
    const viaA = new RegistryClient({ urls: [a.url] });
    const viaB = new RegistryClient({ urls: [b.url] });
    const notices: WorkerNotice[] = [];
    const started = new Map<string, () => void>();
    // A long-poll claim (issue 17) may start the handler before the submit's answer is read.
    const startedIds = new Set<string>();
    const aborted = new Map<string, (x: { at: number; reason: JobAbortedError }) => void>();
    const worker = new JobWorker({
      client: viaA,
      instanceId: 'sig-worker',
      capability: 'busy',
      // One slot: while the handler is busy no long-poll claim of this worker is
      // parked, so a force-reclaimed job cannot be claimed back by the worker
      // itself (which would tell it "claimed again" before the signal does).
      concurrency: 1,
      // Far from any renewal: only the long-poll can tell the handler in time.
      renewEveryMs: 20_000,
      maxIdleMs: 100, // claim the next round's job promptly (the test's pace, not what is measured)
      onNotice: (n) => notices.push(n),
      handler: ({ id, signal }) =>
        new Promise((_, reject) => {
          signal.addEventListener('abort', () => {
            aborted.get(id)?.({ at: performance.now(), reason: signal.reason as JobAbortedError });
            reject(signal.reason);
          });
          startedIds.add(id);
          started.get(id)?.();
        }),
    });
    worker.start();
    const latencies: number[] = [];
    const rounds = 30;
    try {
      for (let i = 0; i < rounds + 1; i++) {
        const { id } = await viaB.submit({ capability: 'busy', submitted_by: 't', submitted_payload: { i } });
        const running = new Promise<void>((r) => (startedIds.has(id) ? r() : started.set(id, r)));
        const ended = new Promise<{ at: number; reason: JobAbortedError }>((r) => aborted.set(id, r));
        await running;
        const reclaim = i === rounds; // the last round: a force reclaim instead of a cancel
        // Let the worker's long-poll name the new claim before the change.
        await new Promise((r) => setTimeout(r, 50));
        const t0 = performance.now();
        if (reclaim)
          expect((await fetch(`${b.url}/jobs/${id}/reclaim`, { method: 'POST' })).status).toBe(200);
        else await viaB.cancel(id, 'test');
        const { at, reason } = await Promise.race([
          ended,
          new Promise<never>((_, reject) =>
            setTimeout(
              () =>
                reject(
                  new Error(
                    `round ${i}: no abort within 20 s; notices: ${JSON.stringify(notices.filter((n) => n.jobId === id))}`,
                  ),
                ),
              20_000,
            ).unref(),
          ),
        ]);
        expect(reason.code).toBe(reclaim ? 'claim_superseded' : 'cancelled');
        expect(notices).toContainEqual({
          type: 'refused',
          jobId: id,
          claimEpoch: 1,
          write: 'signal',
          reason: reason.code,
        });
        if (!reclaim) latencies.push(at - t0);
      }
    } finally {
      await worker.stop(1_000);
      await Promise.all([a.stop(), b.stop()]);
    }
    const sorted = [...latencies].sort((x, y) => x - y);
    const pct = (p: number) =>
      sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
    console.log(
      `cancel → handler signal via another replica, ${sorted.length} cancels: p50 ${pct(50).toFixed(1)} ms, p99 ${pct(99).toFixed(1)} ms, max ${(sorted.at(-1) as number).toFixed(1)} ms`,
    );
    expect(latencies).toHaveLength(rounds);
  }, 180_000);
});

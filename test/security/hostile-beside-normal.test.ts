import { fileURLToPath } from 'node:url';
import { adminUrl, createDatabase, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { startSideProcess } from '../support/side-process.ts';

/**
 * Issue 18's closing check: with the bounds in place, the hostile requests of
 * its findings sent all at once beside a normal job stream. The normal stream
 * must see no error and every job must complete exactly once. Its claim
 * latency is printed against an undisturbed run of the same stream, and
 * against a run beside the same flood aimed at a second registry on this
 * machine (a decoy): on two shared cores the attacker's own CPU slows
 * everything, so the decoy run tells what the machine's load costs from what
 * the hostile requests cost our registry (tests do not assert wall time; the
 * figures go in the note).
 */
const db = useTestDatabase();
const flood = fileURLToPath(new URL('./hostile-flood.ts', import.meta.url));
/** Jobs each of the stream's four workers runs per measured phase. */
const perWorker = 250;

const post = async (base: string, path: string, body: string | unknown) => {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json().catch(() => undefined)) as Record<string, unknown> };
};

const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)] ?? 0;

/** Four workers, each submitting, claiming and completing `perWorker` jobs; claim latencies in ms. */
async function normalStream(base: string, capability: string, perWorker: number) {
  const latencies: number[] = [];
  const errors: string[] = [];
  const completed: string[] = [];
  await Promise.all(
    Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; i < perWorker; i++) {
        const sub = await post(base, '/jobs', {
          capability,
          submitted_by: 'normal',
          submitted_payload: { w, i },
        });
        if (sub.status !== 201) errors.push(`submit ${sub.status}`);
        const started = performance.now();
        const claim = await post(base, '/jobs/claim', { capability, instance_id: `normal-${w}` });
        latencies.push(performance.now() - started);
        if (claim.status !== 200) {
          errors.push(`claim ${claim.status}`);
          continue;
        }
        for (const job of (claim.body.claimed ?? []) as { id: string; claim_epoch: number }[]) {
          const done = await post(base, '/jobs/batch', {
            instance_id: `normal-${w}`,
            deltas: [{ id: job.id, claim_epoch: job.claim_epoch, status: 'completed', result: { ok: true } }],
          });
          if (done.status !== 200 || (done.body.rejected as unknown[] | undefined)?.length) {
            errors.push(`complete ${done.status} ${JSON.stringify(done.body)}`);
          } else completed.push(job.id);
        }
      }
    }),
  );
  return { latencies, errors, completed };
}

/**
 * The findings' requests, over and over, from a process of their own (an
 * attacker is not the victim's process: sharing an event loop would time the
 * attacker's own work into the stream's claims). `stop()` ends it and gives
 * the count of each status it was answered (0: no answer).
 */
function hostile(base: string) {
  const child = startSideProcess<Record<string, number>>(flood, [base]);
  return {
    started: child.started,
    async stop() {
      return new Map(Object.entries(await child.stop()).map(([s, n]) => [Number(s), n]));
    },
  };
}

describe('hostile requests beside a normal job stream (issue 18)', () => {
  it('leave the normal stream without an error and every job completed once; its claim p99 is printed', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'hostile' });
    try {
      // Warm-up (the registry's JIT, the pool), checked but not measured.
      const warm = await normalStream(r.url, 'normal', 25);
      expect(warm.errors).toEqual([]);
      const quiet = await normalStream(r.url, 'normal', perWorker);
      expect(quiet.errors).toEqual([]);

      // The same flood at a decoy registry: this machine as loaded, ours untouched.
      const decoyDb = await createDatabase(adminUrl());
      const decoy = await spawnRegistry({ databaseUrl: decoyDb.url, replicaId: 'decoy' });
      let beside: Awaited<ReturnType<typeof normalStream>>;
      try {
        const aside = hostile(decoy.url);
        await aside.started;
        beside = await normalStream(r.url, 'normal', perWorker);
        await aside.stop();
      } finally {
        await decoy.stop();
        await decoyDb.drop();
      }
      expect(beside.errors).toEqual([]);

      const attack = hostile(r.url);
      await attack.started;
      const loud = await normalStream(r.url, 'normal', perWorker);
      const statuses = await attack.stop();
      expect(loud.errors).toEqual([]);
      expect(statuses.get(0) ?? 0).toBe(0); // no connection dropped
      const fiveHundreds = [...statuses].filter(([s]) => s >= 500);
      expect(fiveHundreds).toEqual([]);
      expect(statuses.size).toBeGreaterThan(0);
      expect([...statuses.keys()].every((s) => s >= 400 && s < 500)).toBe(true);

      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      try {
        const rows = await sql<{ status: string; n: number }[]>`
          select status, count(*)::int as n from jobs where capability = 'normal' group by status`;
        const total = 4 * (25 + 3 * perWorker);
        expect(rows).toEqual([{ status: 'completed', n: total }]);
        expect(
          new Set([...warm.completed, ...quiet.completed, ...beside.completed, ...loud.completed]).size,
        ).toBe(total);
        // Nothing the hostile requests sent was stored.
        const [agents] = await sql<{ n: number }[]>`
          select count(*)::int as n from agents where agent_id in ('wedge', 'deps', 'ssrf')`;
        expect(agents?.n).toBe(0);
      } finally {
        await sql.end();
      }
      const hostileSent = [...statuses.values()].reduce((a, b) => a + b, 0);
      const [q, d, l] = [quiet, beside, loud].map((x) => p99(x.latencies)) as [number, number, number];
      console.log(
        `[hostile] claim p99 undisturbed ${q.toFixed(1)} ms, with the flood at a decoy registry ${d.toFixed(1)} ms, ` +
          `beside ${hostileSent} hostile requests ${l.toFixed(1)} ms: ${(l / q).toFixed(2)}x the undisturbed run, ` +
          `${(l / d).toFixed(2)}x the decoy run; hostile answers ${JSON.stringify(Object.fromEntries(statuses))}`,
      );
    } finally {
      await r.stop();
    }
  }, 180_000);
});

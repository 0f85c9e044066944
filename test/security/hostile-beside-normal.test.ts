import { spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';

/**
 * Issue 18's closing check: with the bounds in place, the hostile requests of
 * its findings sent all at once beside a normal job stream. The normal stream
 * must see no error and every job must complete exactly once. Its claim
 * latency is printed against an undisturbed run of the same stream (tests do
 * not assert wall time; the figures go in the note).
 */
const db = useTestDatabase();

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

/** The findings' requests, over and over until `stop()`: every answer must be 4xx, none 5xx. */
function hostile(base: string) {
  let running = true;
  const statuses = new Map<number, number>();
  const count = (s: number) => statuses.set(s, (statuses.get(s) ?? 0) + 1);
  // Bodies built once: the measured stream shares this process's event loop,
  // and building 900 KB per request here would count against the registry.
  const nested = `${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}`;
  const wedge = `{"agent_id":"wedge","tools":[${Array(300_000).fill('{}').join(',')}]}`;
  const deps = JSON.stringify({
    agent_id: 'deps',
    tools: [{ function_name: 'f', capability: 'c', dependencies: Array(2_000).fill({ capability: '' }) }],
  });
  const requests: (() => Promise<number>)[] = [
    // 300,000 empty tools (about 900 KB).
    () => post(base, '/heartbeat', wedge).then((r) => r.status),
    // 2,000 dependencies on capability "".
    () => post(base, '/heartbeat', deps).then((r) => r.status),
    // A path-smuggling http_host aimed at the admin routes.
    () =>
      post(base, '/heartbeat', {
        agent_id: 'ssrf',
        http_host: '127.0.0.1:1/admin/fleet/drain#',
        http_port: 80,
        tools: [],
      }).then((r) => r.status),
    // A claim with a 20 KB instance id, on the normal stream's capability.
    () =>
      post(base, '/jobs/claim', { capability: 'normal', instance_id: 'i'.repeat(20 * 1024) }).then(
        (r) => r.status,
      ),
    // A completion whose result nests 5,000 levels.
    () =>
      post(
        base,
        '/jobs/batch',
        `{"instance_id":"x","deltas":[{"id":"00000000-0000-0000-0000-000000000000","status":"completed","result":${nested}}]}`,
      ).then((r) => r.status),
  ];
  const loops = requests.map(async (send) => {
    while (running) count(await send().catch(() => 0));
  });
  return {
    statuses,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

describe('hostile requests beside a normal job stream (issue 18)', () => {
  it('leave the normal stream without an error and every job completed once; its claim p99 is printed', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'hostile' });
    try {
      const quiet = await normalStream(r.url, 'normal', 75);
      expect(quiet.errors).toEqual([]);

      const attack = hostile(r.url);
      const loud = await normalStream(r.url, 'normal', 75);
      await attack.stop();
      expect(loud.errors).toEqual([]);
      expect(attack.statuses.get(0) ?? 0).toBe(0); // no connection dropped
      const fiveHundreds = [...attack.statuses].filter(([s]) => s >= 500);
      expect(fiveHundreds).toEqual([]);
      expect([...attack.statuses.keys()].every((s) => s >= 400 && s < 500)).toBe(true);

      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      try {
        const rows = await sql<{ status: string; n: number }[]>`
          select status, count(*)::int as n from jobs where capability = 'normal' group by status`;
        expect(rows).toEqual([{ status: 'completed', n: 600 }]);
        expect(new Set([...quiet.completed, ...loud.completed]).size).toBe(600);
        // Nothing the hostile requests sent was stored.
        const [agents] = await sql<{ n: number }[]>`
          select count(*)::int as n from agents where agent_id in ('wedge', 'deps', 'ssrf')`;
        expect(agents?.n).toBe(0);
      } finally {
        await sql.end();
      }
      const hostileSent = [...attack.statuses.values()].reduce((a, b) => a + b, 0);
      console.log(
        `[hostile] claim p99 undisturbed ${p99(quiet.latencies).toFixed(1)} ms, beside ${hostileSent} hostile requests ` +
          `${p99(loud.latencies).toFixed(1)} ms (${(p99(loud.latencies) / p99(quiet.latencies)).toFixed(2)}x); ` +
          `hostile answers ${JSON.stringify(Object.fromEntries(attack.statuses))}`,
      );
    } finally {
      await r.stop();
    }
  }, 180_000);
});

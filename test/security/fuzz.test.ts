import { errorBodySchema } from '@mesh/protocol';
import { freePort, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { type FuzzCase, fuzzCase, type Pools } from './fuzz/arbitraries.ts';
import { rssMb, stateDigest, storeFixture } from './fuzz/fixture.ts';
import { describeRequest, type RawResponse, sendRaw } from './fuzz/raw-http.ts';

// Issue 16 item 1: generated hostile requests against every route of a real
// registry process on real PostgreSQL. Replay a failure with FUZZ_SEED=<seed>
// (printed below); FUZZ_RUNS sets the number of requests (default 10,000).
const runs = Number(process.env.FUZZ_RUNS ?? 10_000);
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const adminToken = 'fuzz-admin-token';
const agentToken = 'fuzz-agent-token';
const clientToken = 'fuzz-client-token';

const db = useTestDatabase();
let r: RegistryProcess;
let pools: Pools;
let exited = false;

beforeAll(async () => {
  r = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: 'fuzz',
    adminPort: await freePort(),
    // Every kind of token is set, so the token checks are fuzzed too (fixture calls use the admin token).
    args: ['--admin-token', adminToken, '--replica-heartbeat', '1s', '--agent-timeout', '1h'],
    env: { MESH_AGENT_TOKEN: agentToken, MESH_CLIENT_TOKEN: clientToken },
  });
  void r.exited.then(() => {
    exited = true;
  });
  const fixture = await storeFixture((method, path, body) => call(r.url, method, path, body, adminToken));
  pools = {
    ...fixture,
    replicaIds: ['fuzz', 'fuzz-ghost'],
    tokens: { admin: adminToken, agent: agentToken, client: clientToken },
  };
});
afterAll(async () => {
  await r?.stop();
});

/** The gin text MCP Mesh 3.7 answers for unknown routes and methods (kept for compatibility). */
const ginNotFound = (res: RawResponse) => res.status === 404 && res.body.toString() === '404 page not found';

/** The parts of two state digests that differ (`jobs: a -> b`). */
function changedParts(before: string, after: string): string {
  const was = new Map(before.split(' ').map((part) => part.split(':') as [string, string]));
  return after
    .split(' ')
    .map((part) => part.split(':') as [string, string])
    .filter(([name, value]) => was.get(name) !== value)
    .map(([name, value]) => `${name} ${was.get(name)} -> ${value}`)
    .join(', ');
}

/** Why an answer breaks an invariant, or undefined. */
function violation(c: FuzzCase, res: RawResponse): string | undefined {
  if (!Number.isInteger(res.status)) return 'no status line';
  if (res.status >= 500) return `answered ${res.status}`;
  if (res.status < 400 || c.request.method === 'HEAD' || ginNotFound(res)) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(res.body.toString());
  } catch {
    return `${res.status} without a JSON error body`;
  }
  const parsed = errorBodySchema.safeParse(body);
  if (!parsed.success || !parsed.data.code) return `${res.status} without the wire error body`;
  return undefined;
}

describe('generated hostile requests (issue 16, item 1)', () => {
  it(`${runs} requests over every route of both listeners: no 5xx, the wire error body, nothing stored changed by a refusal, memory bounded`, async () => {
    const state = stateDigest(db.url, pools.jobIds, pools.agentIds);
    const ports = { main: r.port, admin: Number(new URL(r.adminUrl as string).port) };
    let before = await state.digest();
    const rssBefore = rssMb(r.pid);
    const started = performance.now();
    let sent = 0;
    const byStatus = new Map<number, number>();
    console.log(`fuzz: seed ${seed}, ${runs} runs (replay: FUZZ_SEED=${seed} FUZZ_RUNS=${runs})`);
    try {
      await fc.assert(
        fc.asyncProperty(fuzzCase(pools), async (c) => {
          sent += 1;
          const res = await sendRaw(ports[c.listener], c.request);
          byStatus.set(res.status, (byStatus.get(res.status) ?? 0) + 1);
          const explain = (why: string) =>
            `${why}\nanswer: ${res.status} ${res.body.toString().slice(0, 400)}\nrequest (${c.listener} port):\n${describeRequest(c.request)}`;
          const broken = violation(c, res);
          if (broken) throw new Error(explain(broken));
          if (exited) throw new Error(explain('the registry exited'));
          let after = await state.digest();
          if (res.status >= 400 && after !== before)
            throw new Error(
              explain(`a refused request changed stored state: ${changedParts(before, after)}`),
            );
          // An accepted admin action records the drain state in the background: let it land.
          for (let i = 0; res.status < 400 && c.listener === 'admin' && i < 20; i++) {
            await new Promise((done) => setTimeout(done, 25));
            const again = await state.digest();
            if (again === after) break;
            after = again;
          }
          before = after;
        }),
        { numRuns: runs, seed, endOnFailure: false },
      );
    } finally {
      await state.close();
    }
    const seconds = (performance.now() - started) / 1000;
    const rssAfter = rssMb(r.pid);
    const statuses = [...byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${s}:${n}`);
    console.log(
      `fuzz: ${sent} requests (${runs} runs) in ${seconds.toFixed(1)} s; answers ${statuses.join(' ')}; registry RSS ${rssBefore} MB before, ${rssAfter} MB after`,
    );
    expect(sent).toBeGreaterThanOrEqual(runs);
    expect(exited).toBe(false);
    expect(rssAfter).toBeLessThan(rssBefore + 256);
    const errors = r.logRecords().filter((l) => Number(l.level) >= 50);
    expect(errors).toEqual([]);
    expect(r.logs()).not.toMatch(/unhandled|uncaught/i);
  }, 600_000);
});

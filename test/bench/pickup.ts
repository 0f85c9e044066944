/**
 * `pnpm bench:pickup`: how soon an idle worker starts a job, and what idle
 * workers cost the database (issue 17 item 1). Two registry replicas over
 * one durable PostgreSQL, in one run:
 *
 * 1. Pickup latency: an SDK `Agent` with one worker (concurrency 1) on
 *    replica A; jobs submitted one at a time with an idle gap between them,
 *    to A (same replica) and to B (cross replica); the time from just before
 *    the submit request to the handler's first line, p50/p99/max. Once with
 *    long-poll claims (the default against a registry that offers them) and
 *    once with the worker polling (`longPollMs: 0`, the fallback used against
 *    0.1.0 and MCP Mesh 3.7, backoff up to `maxIdleMs` 2 s).
 *    Beside them, in the same run and with the same gaps, this machine's
 *    floor for those figures, without the SDK: one `GET /health` round trip
 *    over a kept-alive plain `node:http` connection, one durable INSERT +
 *    commit from postgres.js, and a raw long-poll claim (`node:http`, no SDK)
 *    answered after a raw submit (the wire and the database alone).
 * 2. Idle cost: 1,000 SDK `JobWorker`s with nothing to do, on replica A;
 *    claim statements per second the replica ran (its
 *    `mesh_coalesced_statements_total{kind="claim"}`) and claim requests per
 *    second, over a window after they settled; long-poll vs polling.
 *
 * Benchmarks print figures; they assert nothing.
 *
 *   pnpm bench:pickup                                 ≈ 4.5 min
 *   pnpm bench:pickup --jobs 20 --gap 3000            more samples, longer idle gaps
 *   pnpm bench:pickup --idle-workers 200 --window 5   a smaller idle phase
 */
import { parseArgs } from 'node:util';
import { Agent, JobWorker, RegistryClient } from '@mesh/sdk';
import { createDatabase, type RegistryProcess } from '@mesh/testkit';
import postgres from 'postgres';
import { type BenchConnection, NodeHttpConnection } from './drivers.ts';
import { pct, sleep } from './proc.ts';
import { spawnOurs, startBenchPostgres } from './support.ts';

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '12' },
    gap: { type: 'string', default: '2000' },
    'idle-workers': { type: 'string', default: '1000' },
    window: { type: 'string', default: '10' },
    settle: { type: 'string', default: '5' },
  },
});
const jobsPerCase = Number(args.jobs);
const gapMs = Number(args.gap);
const idleWorkers = Number(args['idle-workers']);
const windowSeconds = Number(args.window);
const settleSeconds = Number(args.settle);

const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

type Mode = 'long-poll' | 'polling';
const modes: Mode[] = ['long-poll', 'polling'];
const longPollMs = (mode: Mode) => (mode === 'long-poll' ? 25_000 : 0);

/** Submit→handler-start latencies of `jobsPerCase` jobs, each after an idle gap. */
async function pickup(
  mode: Mode,
  worker: RegistryProcess,
  submitTo: RegistryProcess,
): Promise<{ latencies: number[]; submits: number[] }> {
  const capability = `pickup-${mode}-${worker.replicaId}-${submitTo.replicaId}-${Date.now()}`;
  const agent = new Agent({
    client: new RegistryClient({ urls: [worker.url] }),
    name: 'pickup',
    heartbeatIntervalMs: 5_000,
  });
  const started = new Map<string, number>();
  let arrived: (() => void) | undefined;
  agent.worker({
    capability,
    concurrency: 1,
    maxIdleMs: 2_000,
    longPollMs: longPollMs(mode),
    handler: async ({ id }) => {
      started.set(id, performance.now());
      arrived?.();
      return { ok: true };
    },
  });
  await agent.start();
  const submitter = new RegistryClient({ urls: [submitTo.url] });
  await submitter.info(); // not in the first sample
  const latencies: number[] = [];
  const submits: number[] = [];
  try {
    for (let i = 0; i < jobsPerCase; i++) {
      await sleep(gapMs);
      const handled = new Promise<void>((resolve) => {
        arrived = resolve;
      });
      const t0 = performance.now();
      const { id } = await submitter.submit({ capability, submitted_by: 'bench', submitted_payload: { i } });
      submits.push(performance.now() - t0);
      await Promise.race([handled, sleep(30_000)]);
      const t1 = started.get(id);
      if (t1 === undefined) throw new Error(`job ${id} did not start within 30 s`);
      latencies.push(t1 - t0);
    }
  } finally {
    await agent.stop();
  }
  return { latencies, submits };
}

/**
 * The machine's floor for the pickup figures, same gaps, no SDK: a `GET
 * /health` round trip to `a`; a durable INSERT + commit (its own database);
 * a raw parked claim on `a` answered after a raw submit to `to`, timed from
 * just before the submit is sent to the claim's answer.
 */
async function floor(a: RegistryProcess, b: RegistryProcess, floorDbUrl: string) {
  // Kept-alive plain node:http connections (drivers.ts): the claim parks on its own.
  const open = (r: RegistryProcess) => {
    const { hostname, port } = new URL(r.url);
    return new NodeHttpConnection(hostname, Number(port));
  };
  const toA = open(a);
  const toB = open(b);
  const claimer = open(a);
  const ok = async (conn: BenchConnection, method: string, path: string, body?: unknown) => {
    const res = await conn.request(method, path, body);
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.json)}`);
  };
  const sql = postgres(floorDbUrl, { max: 1, onnotice: () => {} });
  const out = { health: [] as number[], insert: [] as number[], same: [] as number[], other: [] as number[] };
  try {
    await sql`create table if not exists floor_probe (id bigserial primary key, payload jsonb not null)`;
    // The connections, not in the figures.
    for (const conn of [toA, toB, claimer]) await ok(conn, 'GET', '/health');
    for (let i = 0; i < jobsPerCase; i++) {
      await sleep(gapMs);
      let t0 = performance.now();
      await ok(toA, 'GET', '/health');
      out.health.push(performance.now() - t0);
      await sleep(gapMs);
      t0 = performance.now();
      await sql`insert into floor_probe (payload) values (${sql.json({ i })})`;
      out.insert.push(performance.now() - t0);
      for (const [to, into, replicaId] of [
        [toA, out.same, a.replicaId],
        [toB, out.other, b.replicaId],
      ] as const) {
        const capability = `floor-${replicaId}-${Date.now()}`;
        const claimed = ok(claimer, 'POST', '/jobs/claim', {
          capability,
          instance_id: `floor-${i}`,
          wait_ms: 30_000,
        }).then(() => performance.now());
        await sleep(gapMs); // the claim parks, the machine idles
        t0 = performance.now();
        await ok(to, 'POST', '/jobs', { capability, submitted_by: 'bench', submitted_payload: { i } });
        into.push((await claimed) - t0);
      }
    }
  } finally {
    for (const conn of [toA, toB, claimer]) conn.close();
    await sql.end();
  }
  return out;
}

async function metric(r: RegistryProcess, re: RegExp): Promise<number> {
  let text = '';
  // A keep-alive socket the registry just closed fails the fetch: try again (bounded).
  for (let attempt = 1; ; attempt++) {
    try {
      text = await (await fetch(`${r.url}/metrics`)).text();
      break;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
  let sum = 0;
  for (const m of text.matchAll(re)) sum += Number(m[1]);
  return sum;
}
const claimStatements = (r: RegistryProcess) =>
  metric(r, /^mesh_coalesced_statements_total\{kind="claim"\} (\S+)$/gm);
const claimRequests = (r: RegistryProcess) => metric(r, /^mesh_claims_total\{outcome="[a-z]+"\} (\S+)$/gm);
const parked = (r: RegistryProcess) => metric(r, /^mesh_parked_claims (\S+)$/gm);

/** Claim statements and requests per second with `idleWorkers` workers idle on `r`. */
async function idleCost(mode: Mode, r: RegistryProcess) {
  const client = new RegistryClient({ urls: [r.url] });
  await client.info();
  const workers = Array.from(
    { length: idleWorkers },
    (_, i) =>
      new JobWorker({
        client,
        instanceId: `idle-${mode}-${i}`,
        capability: `idle-${mode}-${i % 10}`,
        concurrency: 1,
        maxIdleMs: 2_000,
        longPollMs: longPollMs(mode),
        handler: async () => ({}),
      }),
  );
  for (const w of workers) w.start();
  try {
    await sleep(settleSeconds * 1000);
    const s0 = await claimStatements(r);
    const q0 = await claimRequests(r);
    const t0 = performance.now();
    await sleep(windowSeconds * 1000);
    const s1 = await claimStatements(r);
    const q1 = await claimRequests(r);
    const seconds = (performance.now() - t0) / 1000;
    return {
      statementsPerSec: (s1 - s0) / seconds,
      requestsPerSec: (q1 - q0) / seconds,
      parked: await parked(r),
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop(1_000)));
  }
}

async function main() {
  const began = performance.now();
  const pg = await startBenchPostgres();
  const replicas: RegistryProcess[] = [];
  try {
    const db = await createDatabase(pg.adminUrl, { migrated: false });
    const a = await spawnOurs(db.url, { replicaId: 'pickup-a' });
    replicas.push(a);
    const b = await spawnOurs(db.url, { replicaId: 'pickup-b' });
    replicas.push(b);

    console.log(
      `\nPickup: submit → handler start, SDK Agent with one worker on replica A, ${jobsPerCase} jobs one at a time, ${gapMs} ms idle before each (ms)`,
    );
    console.log('| worker claims by | submitted to | p50 | p99 | max | submit answer p50 (in the figures) |');
    console.log('|---|---|---:|---:|---:|---:|');
    for (const mode of modes) {
      for (const [label, to] of [
        ['same replica (A)', a],
        ['other replica (B)', b],
      ] as const) {
        const { latencies: l, submits } = await pickup(mode, a, to);
        console.log(
          `| ${mode} | ${label} | ${ms(pct(l, 50))} | ${ms(pct(l, 99))} | ${ms(Math.max(...l))} | ${ms(pct(submits, 50))} |`,
        );
      }
    }

    const floorDb = await createDatabase(pg.adminUrl, { migrated: false });
    try {
      const f = await floor(a, b, floorDb.url);
      console.log(
        `\nThis machine's floor, same gaps (${gapMs} ms idle before each), ${jobsPerCase} samples each, plain node:http, no SDK (ms)`,
      );
      console.log('| what | p50 | p99 | max |');
      console.log('|---|---:|---:|---:|');
      for (const [label, l] of [
        ['GET /health round trip, replica A', f.health],
        ['durable INSERT + commit (postgres.js)', f.insert],
        ['raw parked claim on A, raw submit to A: submit sent → claim answered', f.same],
        ['raw parked claim on A, raw submit to B: submit sent → claim answered', f.other],
      ] as const)
        console.log(`| ${label} | ${ms(pct(l, 50))} | ${ms(pct(l, 99))} | ${ms(Math.max(...l))} |`);
    } finally {
      await floorDb.drop();
    }

    console.log(
      `\nIdle cost: ${idleWorkers} idle SDK JobWorkers on replica A (10 capabilities), ${settleSeconds} s to settle, then a ${windowSeconds} s window`,
    );
    console.log('| worker claims by | claim statements/s | claim requests/s | parked at the end |');
    console.log('|---|---:|---:|---:|');
    for (const mode of modes) {
      const c = await idleCost(mode, a);
      console.log(
        `| ${mode} | ${c.statementsPerSec.toFixed(1)} | ${c.requestsPerSec.toFixed(1)} | ${c.parked} |`,
      );
      await sleep(1_000);
    }
  } finally {
    await Promise.all(replicas.map((r) => r.stop()));
    await pg.stop();
  }
  console.log(`\n(${((performance.now() - began) / 1000).toFixed(0)} s)`);
}

await main();

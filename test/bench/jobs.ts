/**
 * `pnpm bench:jobs`: the workload of reference/mcp-mesh-baseline.md against our
 * registry and the MCP Mesh registry 3.7.1, on the same PostgreSQL, in the
 * same run. Prints throughput, latency percentiles, empty claims and the
 * ratio ours/theirs. Benchmarks print figures; they assert nothing.
 *
 *   pnpm bench:jobs                         N=2000 W=8 both, N=20000 W=8 ours, 5 rounds
 *   pnpm bench:jobs --n 2000 --workers 8    one size, both registries
 *   pnpm bench:jobs --json out.json         also write the figures as JSON
 *   pnpm bench:jobs --client node-http      the same over plain node:http clients
 *   pnpm bench:jobs --mode db               ours over HTTP and the registry's own statements
 *                                           run from this process (no HTTP), in the same run
 *   pnpm bench:jobs --batch 8               ours: SDK-like workers of concurrency 8, each claiming
 *                                           max_jobs = 8 and completing them in one request (as
 *                                           the SDK does for jobs that end together), W/8 of them
 *                                           (as many jobs in flight as MCP Mesh has); MCP Mesh: W
 *                                           single-claim workers
 *   pnpm bench:jobs --batch 8 --batch-workers 8   ours: 8 such workers (64 jobs in flight)
 *   pnpm bench:jobs --beside                ours: each completion carries the worker's next claim
 *                                           (POST /jobs/batch with `claim`, feature
 *                                           claim-beside-deltas, as the SDK sends them); with
 *                                           --batch, a worker's K completions and its next claim of
 *                                           K share one request. MCP Mesh as without it
 */
import { existsSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { mcpRegistryBin } from '@mesh/testkit';
import postgres from 'postgres';
import { type BenchConnection, type ClientKind, directStore, httpConnection } from './drivers.ts';
import { cpuMeter, fmt, pct, sleep } from './proc.ts';
import { migratedByOurs, runSql, startBenchPostgres, startOurs, startTheirs } from './support.ts';

const { values: args } = parseArgs({
  options: {
    n: { type: 'string' },
    workers: { type: 'string', default: '8' },
    submitters: { type: 'string', default: '8' },
    only: { type: 'string' },
    json: { type: 'string' },
    'big-n': { type: 'string', default: '20000' },
    // Jobs each freshly started registry serves before the measured run (not measured),
    // so that the run sees a registry in its steady state (docs/benchmarks.md).
    warmup: { type: 'string', default: '5000' },
    runs: { type: 'string', default: '5' },
    client: { type: 'string', default: 'http1' },
    mode: { type: 'string', default: 'http' },
    batch: { type: 'string' },
    'batch-workers': { type: 'string' },
    beside: { type: 'boolean', default: false },
  },
});
const clientKind = args.client as ClientKind;
if (!['http1', 'node-http'].includes(clientKind)) throw new Error('--client is http1 or node-http');
if (!['http', 'db'].includes(args.mode ?? '')) throw new Error('--mode is http or db');
/** Slots per worker with --batch (SDK-like batch claims); undefined: single claims. */
const batch = args.batch ? Number(args.batch) : undefined;
/** Ours: completions carry the next claim (feature claim-beside-deltas). */
const beside = args.beside === true;

interface Result {
  registry: string;
  n: number;
  workers: number;
  /** Slots per worker (batch claims), when not single claims. */
  batch?: number;
  submitPerSec: number;
  submitP50: number;
  submitP99: number;
  drainPerSec: number;
  claimP50: number;
  claimP99: number;
  completeP50: number;
  completeP99: number;
  claims: number;
  emptyClaims: number;
  emptyWhileQueued: number;
  verified: string;
  /** CPU per completed job during the drain, in µs. */
  cpuRegistry: number;
  cpuPostgres: number;
  cpuClient: number;
}

async function workload(
  name: string,
  base: string,
  dbUrl: string,
  n: number,
  workers: number,
  registryPid: number,
  open: () => BenchConnection = () => httpConnection(clientKind, base),
): Promise<Result> {
  const capability = `bench-${name}-${n}-${Date.now()}`;
  // Keep-alive connections of the load generator's own (http1.ts: its CPU is the registry's loss):
  // one for registration and heartbeats, one per submitter and one per worker.
  const connections: BenchConnection[] = [];
  const connection = () => {
    const c = open();
    connections.push(c);
    return c;
  };
  const agents = connection();
  // 1. register
  for (let w = 0; w < workers; w++) {
    await agents.request('POST', '/heartbeat', {
      agent_id: `bench-worker-${w}`,
      name: `bench-worker-${w}`,
      version: '1.0.0',
      runtime: 'typescript',
      http_host: '127.0.0.1',
      http_port: 0,
      namespace: 'default',
      tools: [{ function_name: 'run', capability, version: '1.0.0', tags: [] }],
    });
  }
  // Agents heartbeat every 5 s as the SDKs do, so that no registry declares them dead mid-run.
  let beating = true;
  const beats = (async () => {
    while (beating) {
      await sleep(5_000);
      for (let w = 0; w < workers && beating; w++)
        await agents.request('HEAD', `/heartbeat/bench-worker-${w}`);
    }
  })();
  // 2. submit
  const submitLat: number[] = [];
  let next = 0;
  const submitStart = performance.now();
  await Promise.all(
    Array.from({ length: Number(args.submitters) }, async () => {
      const conn = connection();
      while (next < n) {
        const i = next++;
        const t = performance.now();
        const res = await conn.request('POST', '/jobs', {
          capability,
          submitted_by: 'bench',
          submitted_payload: { i },
        });
        submitLat.push(performance.now() - t);
        if (res.status !== 201)
          throw new Error(`${name}: submit answered ${res.status}: ${JSON.stringify(res.json)}`);
      }
    }),
  );
  const submitSecs = (performance.now() - submitStart) / 1000;

  // 3. drain: W workers claim → complete
  const claimLat: number[] = [];
  const completeLat: number[] = [];
  let claimed = 0;
  let completed = 0;
  let claims = 0;
  let empty = 0;
  let emptyWhileQueued = 0;
  const meter = cpuMeter(registryPid, postmasterPid);
  const drainStart = performance.now();
  /** The completion delta of a no-op job, fenced by its epoch. */
  const completion = (job: { id: string; claim_epoch: number }) => ({
    id: job.id,
    claim_epoch: job.claim_epoch,
    status: 'completed',
    result: { ok: true },
  });
  const complete = async (
    conn: BenchConnection,
    instance: string,
    job: { id: string; claim_epoch: number },
  ) => {
    const t2 = performance.now();
    const done = await conn.request('POST', '/jobs/batch', {
      instance_id: instance,
      deltas: [completion(job)],
    });
    completeLat.push(performance.now() - t2);
    if (done.json?.accepted !== 1)
      throw new Error(`${name}: completion refused: ${JSON.stringify(done.json)}`);
    completed += 1;
  };
  const claimOnce = async (conn: BenchConnection, instance: string, max: number) => {
    const t = performance.now();
    const res = await conn.request(
      'POST',
      '/jobs/claim',
      max === 1
        ? { capability, instance_id: instance }
        : { capability, instance_id: instance, max_jobs: max },
    );
    claimLat.push(performance.now() - t);
    claims += 1;
    const got = (res.json?.claimed ?? []) as { id: string; claim_epoch: number }[];
    if (got.length === 0) {
      empty += 1;
      if (claimed < n) emptyWhileQueued += 1;
    }
    claimed += got.length;
    return got;
  };
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const instance = `bench-worker-${w}`;
      const conn = connection();
      if (beside && name !== 'mcp-mesh-3.7.1') {
        // As the SDK's worker against a registry offering claim-beside-deltas:
        // the outcomes of the jobs it holds (all its handlers return in the
        // same turn) go in one POST /jobs/batch that also claims its next
        // jobs; a claim alone only when it holds none.
        const slots = batch ?? 1;
        let held: { id: string; claim_epoch: number }[] = [];
        while (completed < n) {
          if (held.length === 0) {
            held = await claimOnce(conn, instance, slots);
            if (held.length === 0) {
              if (completed >= n) break;
              await sleep(1 + Math.random() * 49);
            }
            continue;
          }
          const t = performance.now();
          const res = await conn.request('POST', '/jobs/batch', {
            instance_id: instance,
            deltas: held.map(completion),
            claim: slots === 1 ? { capability } : { capability, max_jobs: slots },
          });
          const spent = performance.now() - t;
          completeLat.push(spent);
          claimLat.push(spent);
          claims += 1;
          if (res.json?.accepted !== held.length)
            throw new Error(`${name}: completion refused: ${JSON.stringify(res.json)}`);
          completed += held.length;
          held = (res.json?.claimed ?? []) as { id: string; claim_epoch: number }[];
          if (held.length === 0) {
            empty += 1;
            if (claimed < n) emptyWhileQueued += 1;
          }
          claimed += held.length;
        }
        return;
      }
      if (batch && name !== 'mcp-mesh-3.7.1') {
        // As the SDK's worker with `concurrency: batch` and a handler that
        // returns at once: it claims as many jobs as it has free slots
        // (max_jobs); they all end in the same turn of the event loop, so the
        // SDK sends their completions in one POST /jobs/batch (its
        // DeltaBatcher), each fenced by its own epoch. A slot frees when its
        // handler returns, so the next claim goes out while that completion
        // is in flight (on a second connection), with at most 2 × `batch`
        // jobs held (the SDK's bound: slots plus jobs awaiting their answer).
        const completer = connection();
        let awaiting = 0;
        let sending: Promise<void> = Promise.resolve();
        let freed: () => void = () => {};
        let failed: unknown;
        while (completed < n) {
          if (failed) throw failed;
          const free = Math.min(batch, 2 * batch - awaiting);
          if (free <= 0) {
            await new Promise<void>((resolve) => {
              freed = resolve;
            });
            continue;
          }
          const got = await claimOnce(conn, instance, free);
          if (got.length === 0) {
            if (completed >= n) break;
            await sleep(1 + Math.random() * 49);
            continue;
          }
          awaiting += got.length;
          sending = sending.then(async () => {
            const t2 = performance.now();
            const done = await completer.request('POST', '/jobs/batch', {
              instance_id: instance,
              deltas: got.map(completion),
            });
            completeLat.push(performance.now() - t2);
            if (done.json?.accepted !== got.length)
              throw new Error(`${name}: completion refused: ${JSON.stringify(done.json)}`);
            completed += got.length;
            awaiting -= got.length;
            freed();
          });
          sending.catch((err: unknown) => {
            failed = err;
            freed();
          });
        }
        await sending;
        return;
      }
      while (completed < n) {
        const got = await claimOnce(conn, instance, 1);
        if (got.length === 0) {
          if (completed >= n) break;
          await sleep(1 + Math.random() * 49);
          continue;
        }
        for (const job of got) await complete(conn, instance, job);
      }
    }),
  );
  const drainSecs = (performance.now() - drainStart) / 1000;
  const cpu = meter.spent();
  beating = false;
  await beats;
  for (const c of connections) c.close();

  // 5. verify, in the database itself
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  const idCol = name === 'mcp-mesh-3.7.1' ? 'job_id' : 'id';
  const [v] = await sql.unsafe(
    `select count(*) filter (where status = 'completed')::int as completed,
            count(*) filter (where claim_epoch <> 1)::int as reclaimed,
            count(*) filter (where status in ('working','input_required') and owner_instance_id is not null)::int as live,
            count(distinct ${idCol})::int as distinct_ids
     from jobs where capability = $1`,
    [capability],
  );
  await sql.end();
  const ok = v?.completed === n && v?.reclaimed === 0 && v?.live === 0 && v?.distinct_ids === n;
  return {
    registry: name,
    n,
    workers,
    batch: batch && name !== 'mcp-mesh-3.7.1' ? batch : undefined,
    submitPerSec: n / submitSecs,
    submitP50: pct(submitLat, 50),
    submitP99: pct(submitLat, 99),
    drainPerSec: n / drainSecs,
    claimP50: pct(claimLat, 50),
    claimP99: pct(claimLat, 99),
    completeP50: pct(completeLat, 50),
    completeP99: pct(completeLat, 99),
    claims,
    emptyClaims: empty,
    emptyWhileQueued,
    verified: ok ? 'ok' : `FAILED ${JSON.stringify(v)}`,
    cpuRegistry: cpu.registry / n,
    cpuPostgres: cpu.postgres / n,
    cpuClient: cpu.client / n,
  };
}

let postmasterPid = -1;

async function main() {
  const workers = Number(args.workers);
  // With --batch K, ours (and db-direct) run ceil(W/K) SDK-like workers of K
  // slots each, so as many jobs are in flight as MCP Mesh's W single-claim
  // workers have (MCP Mesh always claims one at a time: its baseline);
  // --batch-workers sets how many instead.
  const ourWorkers = args['batch-workers']
    ? Number(args['batch-workers'])
    : batch
      ? Math.max(1, Math.ceil(workers / batch))
      : workers;
  const sizes = args.n ? [Number(args.n)] : [2000];
  const bigN = Number(args['big-n']);
  const only = args.only;
  const warmup = Number(args.warmup);
  const runs = Number(args.runs);
  const haveMcp = existsSync(mcpRegistryBin);
  if (!haveMcp)
    console.log('note: @mcpmesh/cli-linux-x64 is not installed (linux-x64 only); measuring ours alone');

  const pg = await startBenchPostgres();
  console.log(
    `client: ${args.mode === 'db' ? 'ours over HTTP and db-direct (no HTTP)' : 'HTTP'}, ${clientKind}${batch ? `, batch claims: ${batch} slots per worker` : ', single claims'}${beside ? ', ours: completions carry the next claim' : ''}`,
  );
  postmasterPid = pg.postmaster;
  const results: Result[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const runOurs = async (n: number) => {
      const reg = await startOurs(pg.adminUrl, {
        env: { MESH_DB_POOL_SIZE: process.env.BENCH_POOL_SIZE ?? '20' },
        // e.g. BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' to profile the registry
        nodeArgs: process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean),
      });
      try {
        // For experiments: e.g. BENCH_SETUP_SQL='drop index jobs_list_idx'
        if (process.env.BENCH_SETUP_SQL) await runSql(reg.db.url, process.env.BENCH_SETUP_SQL);
        await workload('ours', reg.url, reg.db.url, warmup, ourWorkers, reg.pid); // JIT, statement caches: not measured
        // For experiments on the server, e.g. 'select pg_stat_statements_reset()'
        if (process.env.BENCH_BEFORE_MEASURE_SQL)
          await runSql(pg.adminUrl, process.env.BENCH_BEFORE_MEASURE_SQL);
        results.push(await workload('ours', reg.url, reg.db.url, n, ourWorkers, reg.pid));
      } finally {
        await reg.stop();
      }
    };
    // --mode db: the registry's statements from this process, no HTTP (drivers.ts).
    // The registry migrates the database and is stopped before the run.
    const runDirect = async (n: number) => {
      const db = await migratedByOurs(pg.adminUrl);
      const store = directStore(db.url, Number(process.env.BENCH_POOL_SIZE ?? '20'));
      try {
        await workload('db-direct', '', db.url, warmup, ourWorkers, -1, store.connection); // not measured
        results.push(await workload('db-direct', '', db.url, n, ourWorkers, -1, store.connection));
      } finally {
        await store.close();
        await db.drop();
      }
    };
    const runMcp = async (n: number) => {
      const mcp = await startTheirs(pg.adminUrl);
      try {
        await workload('mcp-mesh-3.7.1', mcp.url, mcp.db.url, warmup, workers, mcp.pid); // not measured
        results.push(await workload('mcp-mesh-3.7.1', mcp.url, mcp.db.url, n, workers, mcp.pid));
      } finally {
        await mcp.stop();
      }
    };
    // Rounds alternate the registries, so drift in the machine's load hits both.
    for (let round = 1; round <= runs; round++) {
      console.log(`round ${round}/${runs}`);
      for (const n of sizes) {
        if (only !== 'mcp') await runOurs(n);
        if (args.mode === 'db') await runDirect(n);
        if (only !== 'ours' && haveMcp) await runMcp(n);
      }
      if (!args.n && only !== 'mcp') await runOurs(bigN);
    }
  } finally {
    for (const f of cleanups) await f();
    await pg.stop();
  }

  // The median run (by claim→complete throughput) of each registry and size.
  const groups = new Map<string, Result[]>();
  for (const r of results)
    groups.set(`${r.registry}:${r.n}`, [...(groups.get(`${r.registry}:${r.n}`) ?? []), r]);
  const medians = [...groups.values()].map((rs) => {
    const sorted = [...rs].sort((a, b) => a.drainPerSec - b.drainPerSec);
    return {
      ...(sorted[Math.floor(sorted.length / 2)] as Result),
      all: rs.map((r) => Math.round(r.drainPerSec)),
    };
  });
  console.log('');
  console.log(
    '| registry | N | W | submit jobs/s | submit p50/p99 ms | claim→complete jobs/s (median; all runs) | claim p50/p99 ms | complete p50/p99 ms | claims | empty (while queued) | verify |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of medians) {
    console.log(
      `| ${r.registry} | ${r.n} | ${r.workers}${r.batch ? `×${r.batch} slots` : ''} | ${fmt(r.submitPerSec)} | ${fmt(r.submitP50, 1)} / ${fmt(r.submitP99, 1)} | ${fmt(r.drainPerSec)} (${r.all.join(', ')}) | ${fmt(r.claimP50, 1)} / ${fmt(r.claimP99, 1)} | ${fmt(r.completeP50, 1)} / ${fmt(r.completeP99, 1)} | ${r.claims} | ${r.emptyClaims} (${r.emptyWhileQueued}, ${fmt((100 * r.emptyWhileQueued) / Math.max(1, r.claims), 2)}%) | ${results.filter((x) => x.registry === r.registry && x.n === r.n).every((x) => x.verified === 'ok') ? 'ok' : 'FAILED'} |`,
    );
  }
  console.log('');
  console.log('CPU per completed job during claim→complete (µs; median run):');
  console.log('| registry | N | registry process | PostgreSQL | load generator |');
  console.log('|---|---|---|---|---|');
  for (const r of medians) {
    console.log(
      `| ${r.registry} | ${r.n} | ${fmt(r.cpuRegistry)} | ${fmt(r.cpuPostgres)} | ${fmt(r.cpuClient)} |`,
    );
  }
  console.log('');
  for (const n of sizes) {
    const ours = medians.find((r) => r.registry === 'ours' && r.n === n);
    const theirs = medians.find((r) => r.registry === 'mcp-mesh-3.7.1' && r.n === n);
    const direct = medians.find((r) => r.registry === 'db-direct' && r.n === n);
    if (ours && direct) {
      const ourRuns = results.filter((r) => r.registry === 'ours' && r.n === n);
      const directRuns = results.filter((r) => r.registry === 'db-direct' && r.n === n);
      const paired = directRuns.map((d, i) =>
        fmt((100 * (ourRuns[i]?.drainPerSec ?? Number.NaN)) / d.drainPerSec),
      );
      console.log(
        `ours (HTTP) as a share of the same statements run directly (no HTTP) at N=${n}, W=${workers}: ${fmt((100 * ours.drainPerSec) / direct.drainPerSec)}% (medians); round by round ${paired.join('%, ')}%`,
      );
    }
    if (ours && theirs) {
      console.log(
        `ratio ours/theirs at N=${n}, W=${workers} (medians): claim→complete ${fmt(ours.drainPerSec / theirs.drainPerSec, 1)}x, submit ${fmt(ours.submitPerSec / theirs.submitPerSec, 1)}x`,
      );
      // Each round's two runs follow each other, so their ratio is less exposed
      // to the machine's drift over the whole run than the ratio of medians.
      const ourRuns = results.filter((r) => r.registry === 'ours' && r.n === n);
      const theirRuns = results.filter((r) => r.registry === 'mcp-mesh-3.7.1' && r.n === n);
      const paired = theirRuns
        .map((t, i) => (ourRuns[i]?.drainPerSec ?? Number.NaN) / t.drainPerSec)
        .filter(Number.isFinite)
        .sort((a, b) => a - b);
      console.log(
        `ratio ours/theirs at N=${n}, W=${workers}, round by round: ${paired.map((x) => fmt(x, 1)).join(', ')} (median ${fmt(paired[Math.floor(paired.length / 2)] as number, 1)}x)`,
      );
    }
  }
  const small = medians.find((r) => r.registry === 'ours' && r.n === sizes[0]);
  const big = medians.find((r) => r.registry === 'ours' && r.n === bigN);
  if (small && big && !args.n) {
    console.log(
      `ours at N=${bigN} vs N=${small.n} (medians): ${fmt((100 * big.drainPerSec) / small.drainPerSec, 0)}% of the throughput`,
    );
  }
  for (const r of results.filter((x) => x.verified !== 'ok'))
    console.log(`VERIFY FAILED: ${r.registry} N=${r.n}: ${r.verified}`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`);
}

await main();

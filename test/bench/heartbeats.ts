/**
 * `pnpm bench:heartbeats`: agents' heartbeats against our registry and the
 * MCP Mesh registry 3.7.1, on the same PostgreSQL, in the same run (issue 17).
 * Benchmarks print figures; they assert nothing.
 *
 * Closed loop: A agents (default 50), each on a keep-alive connection of its
 * own, send `HEAD /heartbeat/{id}` (then `POST /heartbeat` with their
 * registration) back to back for D seconds; throughput and latency. Rounds
 * alternate the registries.
 *
 * Fleet (`--fleet 10000`, ours only): that many agents (seeded with one
 * INSERT … SELECT generate_series) each send `HEAD /heartbeat/{id}` every 5 s,
 * evenly spread, for D seconds: the CPU of the registry and of PostgreSQL,
 * PostgreSQL commits per second, and the registry's heartbeat statements per
 * second (its /metrics).
 *
 *   pnpm bench:heartbeats                         50 agents, HEAD and POST, 3 rounds of 10 s
 *   pnpm bench:heartbeats --agents 50 --seconds 5 --rounds 1
 *   pnpm bench:heartbeats --fleet 10000 --seconds 30 --only ours
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { mcpRegistryBin } from '@mesh/testkit';
import postgres from 'postgres';
import { Http1Connection } from './http1.ts';
import { cpuMeter, fmt, pct, rssBytes, sleep } from './proc.ts';
import { type BenchRegistry, startBenchPostgres, startOurs, startTheirs } from './support.ts';

const { values: args } = parseArgs({
  options: {
    agents: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    fleet: { type: 'string' },
    only: { type: 'string' },
    kinds: { type: 'string', default: 'head,post' },
  },
});

const registration = (id: string) => ({
  agent_id: id,
  name: id,
  version: '1.0.0',
  runtime: 'typescript',
  http_host: '127.0.0.1',
  http_port: 9000,
  namespace: 'default',
  tools: [{ function_name: 'run', capability: `hb-${id}`, version: '1.0.0', tags: [] }],
});

interface Loop {
  registry: string;
  kind: string;
  perSec: number;
  p50: number;
  p99: number;
  errors: number;
  cpuRegistry: number;
  cpuPostgres: number;
  /** Heartbeats per shared statement (ours). */
  perStatement: number;
}

let postmaster = -1;

async function closedLoop(name: string, base: string, pid: number, kind: 'head' | 'post'): Promise<Loop> {
  const { hostname, port } = new URL(base);
  const agents = Number(args.agents);
  const conns = Array.from({ length: agents }, () => new Http1Connection(hostname, Number(port)));
  const ids = conns.map((_, i) => `hb-agent-${i}`);
  // Registered (a full heartbeat each) before the loop.
  await Promise.all(conns.map((c, i) => c.request('POST', '/heartbeat', registration(ids[i] as string))));
  const send = (c: Http1Connection, id: string) =>
    kind === 'head'
      ? c.request('HEAD', `/heartbeat/${id}`)
      : c.request('POST', '/heartbeat', registration(id));
  const run = async (ms: number, lat: number[] | undefined) => {
    let errors = 0;
    let count = 0;
    const end = performance.now() + ms;
    await Promise.all(
      conns.map(async (c, i) => {
        while (performance.now() < end) {
          const t = performance.now();
          const res = await send(c, ids[i] as string);
          lat?.push(performance.now() - t);
          count += 1;
          if (res.status !== 200 && res.status !== 202) errors += 1;
        }
      }),
    );
    return { errors, count };
  };
  await run(2_000, undefined); // warm-up, not measured
  const statements = async () => (name === 'ours' ? await heartbeatStatements(base, kind) : Number.NaN);
  const stmts0 = await statements();
  const lat: number[] = [];
  const meter = cpuMeter(pid, postmaster);
  const t0 = performance.now();
  const { errors, count } = await run(Number(args.seconds) * 1000, lat);
  const secs = (performance.now() - t0) / 1000;
  const cpu = meter.spent();
  const stmts = (await statements()) - stmts0;
  for (const c of conns) c.close();
  return {
    registry: name,
    kind: kind === 'head' ? 'HEAD /heartbeat' : 'POST /heartbeat',
    perSec: count / secs,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    errors,
    cpuRegistry: cpu.registry / count,
    cpuPostgres: cpu.postgres / count,
    perStatement: count / stmts,
  };
}

/** The registry's shared heartbeat statements so far (mesh_coalesced_statements_total). */
async function heartbeatStatements(base: string, kind: 'head' | 'post' = 'head'): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(
    `mesh_coalesced_statements_total\\{kind="${kind === 'head' ? 'heartbeat' : 'refresh'}"\\} (\\d+)`,
  ).exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

async function fleet(pgAdminUrl: string): Promise<void> {
  const n = Number(args.fleet);
  const secs = Number(args.seconds);
  const reg = await startOurs(pgAdminUrl);
  const sql = postgres(reg.db.url, { max: 1, onnotice: () => {} });
  try {
    // n agents, one tool each, as many name groups: in one statement each.
    await sql`insert into agents (agent_id, name, runtime, version, http_host, http_port)
              select 'fleet-' || g, 'fleet-' || g, 'typescript', '1.0.0', '127.0.0.1', 9000
              from generate_series(1, ${n}::int) g`;
    await sql`insert into agent_capabilities (agent_id, capability, function_name, version)
              select 'fleet-' || g, 'fleet-cap-' || (g % 100), 'run', '1.0.0' from generate_series(1, ${n}::int) g`;
    // For experiments, e.g. BENCH_SETUP_SQL='drop index agents_status_updated_idx'
    if (process.env.BENCH_SETUP_SQL) await sql.unsafe(process.env.BENCH_SETUP_SQL);
    const { hostname, port } = new URL(reg.url);
    // Agents are many; connections are what the load generator can hold: each
    // beat goes out on a free one of 64 (an agent's own connection in production).
    const pool = Array.from({ length: 64 }, () => new Http1Connection(hostname, Number(port)));
    const free = [...pool];
    const lat: number[] = [];
    let sent = 0;
    let late = 0; // sent more than 100 ms after due
    let errors = 0;
    const commits = async () => {
      const [row] = await sql<{ n: number }[]>`
        select (xact_commit + xact_rollback)::float8 as n from pg_stat_database where datname = current_database()`;
      return row?.n ?? Number.NaN;
    };
    const hot = async () => {
      const [row] = await sql<{ upd: number; hot: number }[]>`
        select n_tup_upd::float8 as upd, n_tup_hot_upd::float8 as hot from pg_stat_user_tables where relname = 'agents'`;
      return row ?? { upd: Number.NaN, hot: Number.NaN };
    };
    const hot0 = await hot();
    const stmts0 = await heartbeatStatements(reg.url);
    const commits0 = await commits();
    const meter = cpuMeter(reg.pid, postmaster);
    const start = performance.now();
    const periodMs = 5_000;
    // Agent i beats at i/n of each 5 s period. Every 2 ms the beats that fell
    // due are queued; a beat goes out on a free connection, so a registry that
    // falls behind shows as queueing (the "behind" column), not as lost beats.
    const queue: { id: string; due: number }[] = [];
    let k = 0;
    let queuedMax = 0;
    let done: () => void = () => {};
    const finished = new Promise<void>((r) => {
      done = r;
    });
    let outstanding = 0;
    let scheduling = true;
    const pump = () => {
      while (queue.length > 0 && free.length > 0) {
        const beat = queue.shift() as { id: string; due: number };
        const conn = free.pop() as Http1Connection;
        const t = performance.now();
        if (t - beat.due > 100) late += 1;
        sent += 1;
        outstanding += 1;
        conn
          .request('HEAD', `/heartbeat/${beat.id}`)
          .then((res) => {
            lat.push(performance.now() - t);
            if (res.status !== 200 && res.status !== 202) errors += 1;
          })
          .catch(() => {
            errors += 1;
          })
          .finally(() => {
            free.push(conn);
            outstanding -= 1;
            pump();
            if (!scheduling && outstanding === 0 && queue.length === 0) done();
          });
      }
    };
    while (performance.now() - start < secs * 1000) {
      const now = performance.now();
      for (; start + (k * periodMs) / n <= now; k++)
        queue.push({ id: `fleet-${(k % n) + 1}`, due: start + (k * periodMs) / n });
      queuedMax = Math.max(queuedMax, queue.length);
      pump();
      await sleep(2);
    }
    scheduling = false;
    if (outstanding > 0 || queue.length > 0) await finished;
    const wall = (performance.now() - start) / 1000;
    const cpu = meter.spent();
    const stmts = (await heartbeatStatements(reg.url)) - stmts0;
    const xacts = (await commits()) - commits0;
    await sleep(600); // the statistics collector's flush
    const hot1 = await hot();
    for (const c of pool) c.close();
    const [healthy] = await sql<
      { n: number }[]
    >`select count(*)::int as n from agents where status = 'healthy'`;
    console.log('');
    console.log(`Fleet: ${n} agents, HEAD /heartbeat every 5 s each, ${fmt(wall, 1)} s, one replica (ours)`);
    console.log(
      '| heartbeats/s | p50 / p99 ms | errors | sent > 100 ms late (max queued) | registry CPU | PostgreSQL CPU | heartbeat statements/s | PostgreSQL commits/s (whole database) | HOT updates of agents rows | registry RSS MB | healthy at end |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    console.log(
      `| ${fmt(sent / wall)} | ${fmt(pct(lat, 50), 1)} / ${fmt(pct(lat, 99), 1)} | ${errors} | ${late} (${queuedMax}) | ${fmt((100 * cpu.registry) / 1e6 / wall, 1)}% of a core | ${fmt((100 * cpu.postgres) / 1e6 / wall, 1)}% of a core | ${fmt(stmts / wall, 1)} | ${fmt(xacts / wall, 1)} | ${fmt((100 * (hot1.hot - hot0.hot)) / Math.max(1, hot1.upd - hot0.upd))}% | ${fmt(rssBytes(reg.pid) / 2 ** 20)} | ${healthy?.n} / ${n} |`,
    );
  } finally {
    await sql.end();
    await reg.stop();
  }
}

async function main() {
  const pg = await startBenchPostgres();
  postmaster = pg.postmaster;
  try {
    if (args.fleet) {
      await fleet(pg.adminUrl);
      return;
    }
    const haveMcp = existsSync(mcpRegistryBin) && args.only !== 'ours';
    const kinds = (args.kinds ?? 'head,post').split(',') as ('head' | 'post')[];
    const results: Loop[] = [];
    const loops = async (name: string, reg: BenchRegistry) => {
      try {
        for (const k of kinds) results.push(await closedLoop(name, reg.url, reg.pid, k));
      } finally {
        await reg.stop();
      }
    };
    for (let round = 1; round <= Number(args.rounds); round++) {
      console.log(`round ${round}/${args.rounds}`);
      if (args.only !== 'mcp') await loops('ours', await startOurs(pg.adminUrl));
      if (haveMcp) await loops('mcp-mesh-3.7.1', await startTheirs(pg.adminUrl));
    }
    console.log('');
    console.log(
      `${args.agents} agents, closed loop, ${args.seconds} s per run; the median run of ${args.rounds}:`,
    );
    console.log(
      '| registry | request | per second (median; all runs) | p50 / p99 ms | errors | CPU µs per heartbeat: registry / PostgreSQL | heartbeats per statement |',
    );
    console.log('|---|---|---|---|---|---|---|');
    const medians = new Map<string, Loop>();
    for (const key of new Set(results.map((r) => `${r.registry}|${r.kind}`))) {
      const rs = results.filter((r) => `${r.registry}|${r.kind}` === key).sort((a, b) => a.perSec - b.perSec);
      const m = rs[Math.floor(rs.length / 2)] as Loop;
      medians.set(key, m);
      console.log(
        `| ${m.registry} | ${m.kind} | ${fmt(m.perSec)} (${rs.map((r) => fmt(r.perSec)).join(', ')}) | ${fmt(m.p50, 1)} / ${fmt(m.p99, 1)} | ${rs.reduce((s, r) => s + r.errors, 0)} | ${fmt(m.cpuRegistry)} / ${fmt(m.cpuPostgres)} | ${fmt(m.perStatement, 1)} |`,
      );
    }
    for (const kind of ['HEAD /heartbeat', 'POST /heartbeat']) {
      const o = medians.get(`ours|${kind}`);
      const t = medians.get(`mcp-mesh-3.7.1|${kind}`);
      if (o && t) {
        const ours = results.filter((r) => r.registry === 'ours' && r.kind === kind);
        const theirs = results.filter((r) => r.registry !== 'ours' && r.kind === kind);
        const paired = ours.map((r, i) => r.perSec / (theirs[i]?.perSec ?? Number.NaN)).map((x) => fmt(x, 1));
        console.log(
          `ratio ours/theirs, ${kind}: ${fmt(o.perSec / t.perSec, 1)}x (medians); round by round ${paired.join(', ')}`,
        );
      }
    }
  } finally {
    await pg.stop();
  }
}

await main();

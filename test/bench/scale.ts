/**
 * `pnpm bench:scale`: does the size of the tables matter (issue 17)? For each
 * queue depth Q, on a fresh database of one durable PostgreSQL: Q queued jobs
 * (and T terminal ones, retained) seeded with one INSERT … SELECT
 * generate_series each, A agents likewise, then `VACUUM ANALYZE` (what
 * autovacuum does after a bulk insert); a fresh registry; then
 *
 * - claim→complete of N jobs from the head of that queue by W workers (single
 *   claims, the http1 client of bench:jobs), after a warm-up of 1,000;
 * - `GET /jobs` paging: 100 pages of 50 following `next_cursor`, and 100
 *   pages with `?status=completed` (or working when T = 0);
 * - `GET /agents` with A agents registered, 300 times (a p99 of 50 was their
 *   slowest);
 * - the registry's RSS after each.
 *
 * Benchmarks print figures; they assert nothing.
 *
 *   pnpm bench:scale                                      Q = 0 and 100,000; A = 10,000; T = 0 (a few minutes)
 *   pnpm bench:scale --queued 0,100000,1000000            add the million
 *   pnpm bench:scale --queued 0,1000000 --terminal 10000000   with 10 million terminal jobs retained (long)
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { Http1Connection } from './http1.ts';
import { cpuMeter, fmt, pct, rssBytes } from './proc.ts';
import { type BenchPostgres, migratedByOurs, spawnOurs, startBenchPostgres } from './support.ts';

const { values: args } = parseArgs({
  options: {
    queued: { type: 'string', default: '0,100000' },
    terminal: { type: 'string', default: '0' },
    agents: { type: 'string', default: '10000' },
    n: { type: 'string', default: '2000' },
    workers: { type: 'string', default: '8' },
  },
});

interface Row {
  queued: number;
  terminal: number;
  seedSecs: number;
  perSec: number;
  claimP50: number;
  claimP99: number;
  pagesP50: number;
  pagesP99: number;
  statusPagesP50: number;
  statusPagesP99: number;
  agentsP50: number;
  agentsP99: number;
  agentsListed: number;
  rssMb: number;
  cpuRegistry: number;
  cpuPostgres: number;
}

const capability = 'scale';
/** Listings timed per row: a p99 of 50 was the slowest one. */
const agentListings = 300;

async function seed(url: string, queued: number, terminal: number, agents: number): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const t0 = performance.now();
  try {
    if (terminal > 0) {
      // Retained terminal jobs, older than the queue, their events already purged.
      await sql`
        insert into jobs (id, capability, status, submitted_at, submitted_by, submitted_payload, result, attempt_count,
                          claim_epoch, finished_at, events_purged)
        select gen_random_uuid(), 'done-' || (g % 50), 'completed', now() - interval '1 day' + g * interval '1 microsecond',
               'seed', jsonb_build_object('i', g), '{"ok":true}'::jsonb, 1, 1, now(), true
        from generate_series(1, ${terminal}::int) g`;
    }
    if (queued > 0) {
      // The queue, FIFO by submitted_at: the workers claim from its head.
      await sql`
        insert into jobs (id, capability, submitted_at, submitted_by, submitted_payload, max_retries)
        select gen_random_uuid(), ${capability}, now() - interval '1 hour' + g * interval '1 microsecond', 'seed',
               jsonb_build_object('i', g), 3
        from generate_series(1, ${queued}::int) g`;
    }
    await sql`
      insert into agents (agent_id, name, runtime, version, http_host, http_port, registration)
      select 'scale-' || g, 'scale-' || (g % 1000), 'typescript', '1.0.0', '127.0.0.1', 9000,
             jsonb_build_object('tools', jsonb_build_array(jsonb_build_object(
               'function_name', 'run', 'capability', 'scale-cap-' || (g % 100), 'version', '1.0.0',
               'dependencies', jsonb_build_array(jsonb_build_object('capability', 'scale-cap-' || ((g + 1) % 100))))),
               'resolved', '{}'::jsonb)
      from generate_series(1, ${agents}::int) g`;
    await sql`
      insert into agent_capabilities (agent_id, capability, function_name, version, dependencies)
      select 'scale-' || g, 'scale-cap-' || (g % 100), 'run', '1.0.0',
             jsonb_build_array(jsonb_build_object('capability', 'scale-cap-' || ((g + 1) % 100)))
      from generate_series(1, ${agents}::int) g`;
    await sql`vacuum analyze jobs`;
    await sql`vacuum analyze agents`;
    await sql`vacuum analyze agent_capabilities`;
  } finally {
    await sql.end();
  }
  return (performance.now() - t0) / 1000;
}

/** N claim→complete cycles by W workers from the head of the queue. */
async function drain(base: string, n: number, workers: number) {
  const { hostname, port } = new URL(base);
  const claimLat: number[] = [];
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const conn = new Http1Connection(hostname, Number(port));
      const instance = `scale-worker-${w}`;
      try {
        while (done < n) {
          const t = performance.now();
          const res = await conn.request('POST', '/jobs/claim', { capability, instance_id: instance });
          claimLat.push(performance.now() - t);
          const [job] = (res.json?.claimed ?? []) as { id: string; claim_epoch: number }[];
          if (!job && done >= n) break; // the other workers took the last ones
          if (!job) throw new Error(`no job to claim (queue too short?): ${JSON.stringify(res.json)}`);
          const ok = await conn.request('POST', '/jobs/batch', {
            instance_id: instance,
            deltas: [{ id: job.id, claim_epoch: job.claim_epoch, status: 'completed', result: { ok: true } }],
          });
          if (ok.json?.accepted !== 1) throw new Error(`completion refused: ${JSON.stringify(ok.json)}`);
          done += 1;
        }
      } finally {
        conn.close();
      }
    }),
  );
  return { perSec: n / ((performance.now() - t0) / 1000), claimLat };
}

async function timed(conn: Http1Connection, path: string) {
  const t = performance.now();
  const res = await conn.request('GET', path);
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${JSON.stringify(res.json)}`);
  return { ms: performance.now() - t, json: res.json };
}

async function pages(conn: Http1Connection, query: string, count: number): Promise<number[]> {
  const lat: number[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < count; i++) {
    const q = `${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const { ms, json } = await timed(conn, `/jobs?limit=50${q}`);
    lat.push(ms);
    cursor = json?.next_cursor ?? null;
  }
  return lat;
}

async function size(pg: BenchPostgres, queued: number, terminal: number): Promise<Row> {
  const n = Number(args.n);
  const workers = Number(args.workers);
  const agents = Number(args.agents);
  // The registry migrates the empty database; then it stops while the tables fill.
  const db = await migratedByOurs(pg.adminUrl, 'scale');
  // The queue must outlast the warm-up and the measured run.
  const seedSecs = await seed(db.url, queued + n + 1_000 + 2 * workers, terminal, agents);
  const reg = await spawnOurs(db.url, { replicaId: 'scale' });
  try {
    await drain(reg.url, 1_000, workers); // warm-up, not measured
    const meter = cpuMeter(reg.pid, pg.postmaster);
    const measured = await drain(reg.url, n, workers);
    const cpu = meter.spent();
    const { hostname, port } = new URL(reg.url);
    const conn = new Http1Connection(hostname, Number(port));
    await pages(conn, '', 10); // warm-up
    const listLat = await pages(conn, '', 100);
    const statusLat = await pages(conn, terminal > 0 ? '&status=completed' : '&status=working', 100);
    const agentLat: number[] = [];
    let listed = 0;
    await timed(conn, '/agents');
    for (let i = 0; i < agentListings; i++) {
      const { ms, json } = await timed(conn, '/agents');
      agentLat.push(ms);
      listed = json?.count ?? 0;
    }
    conn.close();
    return {
      queued,
      terminal,
      seedSecs,
      perSec: measured.perSec,
      claimP50: pct(measured.claimLat, 50),
      claimP99: pct(measured.claimLat, 99),
      pagesP50: pct(listLat, 50),
      pagesP99: pct(listLat, 99),
      statusPagesP50: pct(statusLat, 50),
      statusPagesP99: pct(statusLat, 99),
      agentsP50: pct(agentLat, 50),
      agentsP99: pct(agentLat, 99),
      agentsListed: listed,
      rssMb: rssBytes(reg.pid) / 2 ** 20,
      cpuRegistry: cpu.registry / n,
      cpuPostgres: cpu.postgres / n,
    };
  } finally {
    await reg.stop();
    await db.drop();
  }
}

async function main() {
  const pg = await startBenchPostgres();
  const rows: Row[] = [];
  try {
    const terminal = Number(args.terminal);
    for (const q of (args.queued ?? '0').split(',').map(Number)) {
      console.log(`queued ${q}, terminal ${terminal}, agents ${args.agents}: seeding…`);
      rows.push(await size(pg, q, terminal));
    }
  } finally {
    await pg.stop();
  }
  console.log('');
  console.log(
    `N=${args.n} claim→complete, W=${args.workers}, single claims; ${args.agents} agents; GET /jobs 100 pages of 50; GET /agents ×${agentListings}`,
  );
  console.log(
    '| queued | terminal retained | seed s | claim→complete jobs/s | vs first row | claim p50 / p99 ms | GET /jobs pages p50 / p99 ms | GET /jobs?status= pages p50 / p99 ms | GET /agents p50 / p99 ms (agents listed) | CPU µs per job: registry / PostgreSQL | registry RSS MB |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  const base = rows[0]?.perSec ?? Number.NaN;
  for (const r of rows) {
    console.log(
      `| ${r.queued} | ${r.terminal} | ${fmt(r.seedSecs)} | ${fmt(r.perSec)} | ${fmt((100 * r.perSec) / base)}% | ${fmt(r.claimP50, 1)} / ${fmt(r.claimP99, 1)} | ${fmt(r.pagesP50, 1)} / ${fmt(r.pagesP99, 1)} | ${fmt(r.statusPagesP50, 1)} / ${fmt(r.statusPagesP99, 1)} | ${fmt(r.agentsP50, 1)} / ${fmt(r.agentsP99, 1)} (${r.agentsListed}) | ${fmt(r.cpuRegistry)} / ${fmt(r.cpuPostgres)} | ${fmt(r.rssMb)} |`,
    );
  }
}

await main();

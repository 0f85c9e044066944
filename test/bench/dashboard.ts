// `pnpm bench:dashboard [--seconds 30] [--jobs 5000]`: what open dashboards
// cost the database. One registry replica on a fresh database (some agents and
// jobs in it); for 0, 1 and 20 open dashboards (each one SSE stream, the only
// periodic request an open page makes), the database's own counters
// (pg_stat_database: transactions committed, rows returned and fetched) over
// the window, per second. 0 is the replica's own background work.
import { parseArgs } from 'node:util';
import { migrate } from '@mesh/db';
import { createDatabase, spawnRegistry, startTestPostgres } from '@mesh/testkit';
import postgres from 'postgres';
import { sleep } from './proc.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    jobs: { type: 'string', default: '5000' },
    dashboards: { type: 'string', default: '0,1,20' },
  },
});
const seconds = Number(args.seconds);
const counts = (args.dashboards ?? '0,1,20').split(',').map(Number);

interface Stats {
  xact_commit: number;
  tup_returned: number;
  tup_fetched: number;
}

const pg = await startTestPostgres();
console.log(`PostgreSQL: ${pg.source}, ${pg.serverVersion}; node ${process.version}`);
const db = await createDatabase(pg.adminUrl, { migrated: false });
await migrate(db.url, { appliedBy: 'bench:dashboard' });
const sql = postgres(db.url, { max: 1, onnotice: () => {} });
const registry = await spawnRegistry({ databaseUrl: db.url, replicaId: 'bench' });
try {
  for (let i = 0; i < 20; i++) {
    await fetch(`${registry.url}/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        agent_id: `agent-${i}`,
        name: `agent-${i}`,
        http_host: '127.0.0.1',
        http_port: 9000 + i,
        tools: [{ function_name: `f${i}`, capability: `cap-${i % 5}` }],
      }),
    });
  }
  const total = Number(args.jobs);
  await sql`
    insert into jobs (id, capability, status, submitted_by, submitted_payload, submitted_at, finished_at)
    select gen_random_uuid(), 'cap-' || (g % 5), case when g % 10 = 0 then 'working' else 'completed' end,
           'bench', jsonb_build_object('i', g), now() - g * interval '1 second',
           case when g % 10 = 0 then null else now() end
    from generate_series(1, ${total}) g`;
  await sql`analyze`;
  console.log(`one replica, 20 agents, ${total} jobs; window ${seconds} s per row\n`);

  const read = async (): Promise<Stats> => {
    // Flush this backend's own pending counters first; the other backends flush
    // at least once a second (PostgreSQL 15), so the window's edges blur by ~1 s.
    await sql`select pg_stat_clear_snapshot()`;
    const [row] = await sql<Stats[]>`
      select xact_commit::float8 as xact_commit, tup_returned::float8 as tup_returned,
             tup_fetched::float8 as tup_fetched
      from pg_stat_database where datname = current_database()`;
    return row as Stats;
  };

  /** Rows read per table (sequential reads + index fetches): where tup_returned comes from. */
  const tables = async () =>
    new Map(
      (
        await sql<{ relname: string; seq: number; idx: number }[]>`
          select relname, coalesce(seq_tup_read, 0)::float8 as seq, coalesce(idx_tup_fetch, 0)::float8 as idx
          from pg_stat_user_tables`
      ).map((t) => [t.relname, t]),
    );

  console.log('dashboards  snapshots/s/dashboard  xact_commit/s  tup_returned/s  tup_fetched/s');
  for (const n of counts) {
    const aborts: AbortController[] = [];
    let received = 0;
    for (let i = 0; i < n; i++) {
      const ctl = new AbortController();
      aborts.push(ctl);
      void fetch(`${registry.url}/ui/api/stream`, { signal: ctl.signal })
        .then(async (res) => {
          const reader = (res.body as ReadableStream<Uint8Array>)
            .pipeThrough(new TextDecoderStream())
            .getReader();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            received += value.split('event: snapshot').length - 1;
          }
        })
        .catch(() => {});
    }
    await sleep(3_000); // warm-up: every stream open, the feed ticking
    received = 0;
    const before = await read();
    const tablesBefore = await tables();
    const started = Date.now();
    await sleep(seconds * 1000);
    await sleep(1_100); // let the other backends flush their counters
    const after = await read();
    const tablesAfter = await tables();
    const elapsed = (Date.now() - started) / 1000;
    for (const ctl of aborts) ctl.abort();
    const rate = (k: keyof Stats) => ((after[k] - before[k]) / elapsed).toFixed(1).padStart(14);
    const perDash = n ? (received / n / elapsed).toFixed(2) : '-';
    console.log(
      `${String(n).padStart(10)}  ${perDash.padStart(20)}  ${rate('xact_commit')}  ${rate('tup_returned').padStart(14)}  ${rate('tup_fetched').padStart(13)}`,
    );
    const busiest = [...tablesAfter.values()]
      .map((t) => {
        const b = tablesBefore.get(t.relname);
        return {
          name: t.relname,
          seq: (t.seq - (b?.seq ?? 0)) / elapsed,
          idx: (t.idx - (b?.idx ?? 0)) / elapsed,
        };
      })
      .filter((t) => t.seq + t.idx >= 1)
      .sort((a, b) => b.seq + b.idx - (a.seq + a.idx))
      .slice(0, 4)
      .map((t) => `${t.name} ${t.seq.toFixed(0)} seq + ${t.idx.toFixed(0)} idx`);
    console.log(`${''.padStart(12)}rows/s by table: ${busiest.join(', ') || '-'}`);
    await sleep(2_000); // the feed stops once its last stream closed
  }
} finally {
  await registry.stop();
  await sql.end();
  await db.drop();
  await pg.stop();
}

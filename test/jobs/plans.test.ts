import { createDb } from '@mesh/db';
import { useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStore } from '../../apps/registry/src/services/jobs.ts';

// The hot statements must reach rows through indexes whatever plan PostgreSQL
// caches for them. Their generic plans (which a connection keeps after a few
// calls) are forced here, on one connection whose statistics the test reads.
const db = useTestDatabase();
let sql: ReturnType<typeof createDb>['sql'];
beforeAll(() => {
  sql = createDb(db.url, { max: 1, settings: { plan_cache_mode: 'force_generic_plan' } }).sql;
});
afterAll(async () => {
  await sql.end();
});

/** Sequential scans of jobs, and scans of its index of live claims, so far as the statistics report them. */
async function scans() {
  await sql`select pg_stat_force_next_flush()`;
  // A new statement after the backend went idle: the forced flush has happened.
  const [row] = await sql<{ seq: number; live: number }[]>`
    select t.seq_scan::int as seq, i.idx_scan::int as live
    from pg_stat_user_tables t join pg_stat_user_indexes i on i.relid = t.relid
    where t.relname = 'jobs' and i.indexrelname = 'jobs_live_owner_idx'`;
  return row as { seq: number; live: number };
}

describe('query plans of the hot paths', () => {
  it('claims and completes without scanning the jobs table or all live claims', async () => {
    // A table worth scanning: a deep queue (as in a benchmark), finished jobs and
    // other capabilities' live claims.
    await sql`
      insert into jobs (id, capability, submitted_by, submitted_payload, status, owner_instance_id, attempt_count,
                        claim_epoch, finished_at)
      select gen_random_uuid(), 'other', 's', '{}', case when i % 2 = 0 then 'completed' else 'working' end,
             'someone', 1, 1, case when i % 2 = 0 then now() end
      from generate_series(1, 2000) as i`;
    await sql`
      insert into jobs (id, capability, submitted_by, submitted_payload)
      select gen_random_uuid(), 'plans', 's', jsonb_build_object('i', i) from generate_series(1, 3000) as i`;
    await sql`analyze jobs`;
    const store = new JobStore(sql, { defaultLeaseSeconds: 300, requireClaimEpoch: false, replicaId: 'r' });
    const before = await scans();
    for (let round = 0; round < 10; round++) {
      // Several claimers and completions at once, so the shared statements serve many.
      const claimed = (await Promise.all([1, 2, 3].map((w) => store.claim('plans', `w${w}`, 1)))).flat();
      await Promise.all(
        claimed.map((j, w) =>
          store.applyDeltas(`w${w + 1}`, [
            { id: j.id, claim_epoch: j.claim_epoch, status: 'completed', result: { round } },
          ]),
        ),
      );
    }
    const after = await scans();
    const [done] = await sql<{ n: number }[]>`
      select count(*)::int as n from jobs where capability = 'plans' and status = 'completed'`;
    expect(done?.n).toBe(30);
    expect(after.seq - before.seq).toBe(0);
    expect(after.live - before.live).toBe(0);
  });

  it('keeps one generic plan for the claim and the shared delta instead of planning at every call', async () => {
    // Default plan_cache_mode: a connection plans a statement afresh five times,
    // then keeps the generic plan unless it looks costlier than the custom ones.
    // A parameter that changes the estimate (an id array's length) makes it
    // plan at every call, which cost more than executing the statement did.
    const own = createDb(db.url, { max: 1 }).sql;
    try {
      await own`
        insert into jobs (id, capability, submitted_by, submitted_payload)
        select gen_random_uuid(), 'generic', 's', jsonb_build_object('i', i) from generate_series(1, 500) as i`;
      await own`analyze jobs`;
      const store = new JobStore(own, { defaultLeaseSeconds: 300, requireClaimEpoch: false, replicaId: 'r' });
      const calls = 12;
      for (let i = 0; i < calls; i++) {
        const [job] = await store.claim('generic', 'w', 1);
        expect(job).toBeDefined();
        const res = await store.applyDeltas('w', [
          { id: job?.id, claim_epoch: job?.claim_epoch, status: 'completed', result: i },
        ]);
        expect(res).toEqual({ accepted: 1, rejected: [] });
      }
      const plans = await own<{ statement: string; generic: number; custom: number }[]>`
        select statement, generic_plans::int as generic, custom_plans::int as custom
        from pg_prepared_statements
        where statement like '%with retired as%' or statement like '%update jobs j set%'`;
      const claim = plans.find((p) => p.statement.trimStart().startsWith('with retired as'));
      const delta = plans.find((p) => p.statement.trimStart().startsWith('update jobs j set'));
      for (const p of [claim, delta]) {
        expect(p).toBeDefined();
        expect(p?.custom).toBeLessThanOrEqual(5);
        expect(p?.generic).toBe(calls - (p?.custom ?? 0));
      }
    } finally {
      await own.end();
    }
  });

  it('runs the shared claim and delta statements on the connections kept for them', async () => {
    // server.ts gives the store a second, small pool for them (--db-job-pool-size),
    // so that they keep running on the same warm backends.
    const main = createDb(db.url, { max: 2, applicationName: 'plans-main' }).sql;
    const shared = createDb(db.url, { max: 1, applicationName: 'plans-shared' }).sql;
    try {
      await main`
        insert into jobs (id, capability, submitted_by, submitted_payload)
        values (gen_random_uuid(), 'apart', 's', '{}')`;
      const store = new JobStore(
        main,
        { defaultLeaseSeconds: 300, requireClaimEpoch: false, replicaId: 'r' },
        shared,
      );
      // What each connection ran last, read on the test's own connection.
      const lastOf = async (app: string) =>
        (
          await sql<{ query: string }[]>`select query from pg_stat_activity where application_name = ${app}`
        ).map((row) => row.query);
      const hot = (q: string) => q.includes('with retired as') || q.includes('update jobs j set');
      const [job] = await store.claim('apart', 'w', 1);
      expect(await lastOf('plans-shared')).toEqual([expect.stringContaining('with retired as')]);
      const res = await store.applyDeltas('w', [
        { id: job?.id, claim_epoch: job?.claim_epoch, status: 'completed', result: 1 },
      ]);
      expect(res).toEqual({ accepted: 1, rejected: [] });
      expect(await lastOf('plans-shared')).toEqual([expect.stringContaining('update jobs j set')]);
      expect((await lastOf('plans-main')).some(hot)).toBe(false);
    } finally {
      await Promise.all([main.end(), shared.end()]);
    }
  });

  it('pages GET /jobs through jobs_list_idx, not by sorting the table, with or without a cursor or a status', async () => {
    // A table worth scanning (issue 17: pages of a 100,000-job table took 150 ms when
    // the cached plan, made without the limit's value, sorted every row).
    await sql`
      insert into jobs (id, capability, submitted_by, submitted_payload, submitted_at)
      select gen_random_uuid(), 'listed', 's', jsonb_build_object('i', i), now() - i * interval '1 millisecond'
      from generate_series(1, 20000) as i`;
    await sql`analyze jobs`;
    const store = new JobStore(sql, { defaultLeaseSeconds: 300, requireClaimEpoch: false, replicaId: 'r' });
    const before = await scans();
    const filter = {
      statuses: [] as string[],
      owner: undefined,
      capability: undefined,
      submittedSince: undefined,
      limit: 50,
    };
    let after: { micros: bigint; id: string } | undefined;
    for (let page = 0; page < 8; page++) {
      const got = await store.list({ ...filter, after });
      expect(got.rows).toHaveLength(50);
      after = got.last;
    }
    const working = await store.list({ ...filter, statuses: ['working'], after: undefined });
    expect(working.rows).toHaveLength(50);
    await store.list({ ...filter, statuses: ['working'], after: working.last });
    const now = await scans();
    expect(now.seq - before.seq).toBe(0);
  });
});

import { adminUrl, createDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let sql: postgres.Sql;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createDatabase(adminUrl());
  drop = db.drop;
  sql = postgres(db.url, { max: 2, onnotice: () => {} });
});
afterAll(async () => {
  await sql.end();
  await drop();
});

describe('jobs schema', () => {
  it('answers the claim query from the partial index of claimable rows, however deep the queue', async () => {
    // 20k rows: mostly finished or running, a claimable tail in two capabilities.
    await sql`
      insert into jobs (id, capability, status, owner_instance_id, submitted_payload, submitted_at)
      select gen_random_uuid(),
             case when i % 2 = 0 then 'render' else 'plan' end,
             case when i % 10 < 7 then 'completed' when i % 10 < 8 then 'working' else 'working' end,
             case when i % 10 = 7 then 'agent-1' else null end,
             '{}'::jsonb,
             now() - (i || ' seconds')::interval
      from generate_series(1, 20000) as i`;
    await sql`analyze jobs`;
    const plan = await sql.unsafe(
      `explain select id from jobs
        where capability = 'render' and status = 'working' and owner_instance_id is null
          and attempt_count <= max_retries
        order by submitted_at, id limit 1 for update skip locked`,
    );
    const text = plan.map((r) => Object.values(r)[0]).join('\n');
    expect(text).toMatch(/Index Scan using jobs_claimable_idx/);
    expect(text).not.toMatch(/Sort/);
  });

  it('rejects statuses outside the five, negative counters and non-positive max_duration', async () => {
    const insert = (column: string, value: string | number) =>
      sql`insert into jobs (id, capability, submitted_payload, ${sql(column)})
          values (${crypto.randomUUID()}, 'x', '{}', ${value})`;
    await expect(insert('status', 'running')).rejects.toThrow(/jobs_status_check/);
    await expect(insert('attempt_count', -1)).rejects.toThrow(/jobs_counts_check/);
    await expect(insert('max_duration', 0)).rejects.toThrow(/jobs_max_duration_check/);
  });

  it('keeps event sequence numbers unique per job and deletes events with their job', async () => {
    const id = crypto.randomUUID();
    await sql`insert into jobs (id, capability, submitted_payload) values (${id}, 'x', '{}')`;
    await sql`insert into job_events (job_id, seq, type) values (${id}, 1, 'a')`;
    await expect(sql`insert into job_events (job_id, seq, type) values (${id}, 1, 'b')`).rejects.toThrow(
      /job_events_job_seq_key/,
    );
    await sql`delete from jobs where id = ${id}`;
    expect(await sql`select count(*)::int as n from job_events where job_id = ${id}`).toEqual([{ n: 0 }]);
  });
});

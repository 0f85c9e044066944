import { spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { until } from '../support/until.ts';

// Issue 20 item 7, what was still missing: the database pool's connections in
// use and statements waiting (counted by the registry: postgres.js exposes no
// pool counters), and job durations by capability and outcome.

const db = useTestDatabase();
const pools: postgres.Sql[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end({ timeout: 5 })));
});

const scrape = async (url: string) => (await fetch(`${url}/metrics`)).text();
const value = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('/metrics: database pool and job durations', () => {
  it('shows connections in use and statements waiting while a row lock holds the pool, and both at 0 after', async () => {
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'pool-1',
      env: { MESH_DB_POOL_SIZE: '1' },
    });
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    pools.push(sql);
    try {
      const { body } = await call(r.url, 'POST', '/jobs', {
        capability: 'held',
        submitted_by: 't',
        submitted_payload: {},
      });
      const before = await scrape(r.url);
      expect(value(before, 'mesh_db_pool_size{pool="main"}')).toBe(1);
      expect(value(before, 'mesh_db_pool_size{pool="jobs"}')).toBe(3);
      let release!: () => void;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      const locked = new Promise<void>((resolve) => {
        void sql.begin(async (tx) => {
          await tx`select id from jobs where id = ${body.id} for update`;
          resolve();
          await held;
        });
      });
      await locked;
      // Two cancels of the locked row: the first holds the only connection, the second waits for it.
      const cancels = [1, 2].map(() => call(r.url, 'POST', `/jobs/${body.id}/cancel`));
      const during = await until('a statement waiting for the pool', async () => {
        const m = await scrape(r.url);
        return (value(m, 'mesh_db_pool_statements_waiting{pool="main"}') ?? 0) >= 1 ? m : undefined;
      });
      expect(value(during, 'mesh_db_pool_connections_in_use{pool="main"}')).toBe(1);
      // The most in flight at once since the previous scrape: the two cancels at least.
      expect(value(during, 'mesh_db_pool_statements_in_flight_max{pool="main"}')).toBeGreaterThanOrEqual(2);
      release();
      const answers = await Promise.all(cancels);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
      const after = await until('the pool idle again', async () => {
        const m = await scrape(r.url);
        return value(m, 'mesh_db_pool_connections_in_use{pool="main"}') === 0 &&
          value(m, 'mesh_db_pool_statements_waiting{pool="main"}') === 0
          ? m
          : undefined;
      });
      expect(after).toContain('mesh_db_pool_statements_in_flight_max{pool="main"}');
    } finally {
      await r.stop();
    }
  });

  it('observes each job an owner finishes by capability and outcome, and caps the capabilities it names', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'durations-1' });
    try {
      const finish = async (capability: string, status: 'completed' | 'failed') => {
        await call(r.url, 'POST', '/jobs', { capability, submitted_by: 't', submitted_payload: {} });
        const claim = await call(r.url, 'POST', '/jobs/claim', { capability, instance_id: 'w1' });
        const job = claim.body.claimed[0];
        const done = await call(r.url, 'POST', '/jobs/batch', {
          instance_id: 'w1',
          deltas: [
            {
              id: job.job_id ?? job.id,
              claim_epoch: job.claim_epoch,
              status,
              error: status === 'failed' ? 'x' : undefined,
            },
          ],
        });
        expect(done.body).toEqual({ accepted: 1, rejected: [] });
      };
      await finish('dur-a', 'completed');
      await finish('dur-a', 'completed');
      await finish('dur-a', 'failed');
      let m = await scrape(r.url);
      expect(value(m, 'mesh_job_duration_seconds_count{capability="dur-a",outcome="completed"}')).toBe(2);
      expect(value(m, 'mesh_job_duration_seconds_count{capability="dur-a",outcome="failed"}')).toBe(1);
      expect(
        value(m, 'mesh_job_duration_seconds_bucket{le="86400",capability="dur-a",outcome="completed"}'),
      ).toBe(2);
      // Made-up capabilities past the cap (100 distinct) count as "other".
      for (let i = 0; i < 100; i++) await finish(`dur-many-${i}`, 'completed');
      m = await scrape(r.url);
      expect(value(m, 'mesh_job_duration_seconds_count{capability="dur-many-98",outcome="completed"}')).toBe(
        1,
      );
      expect(
        value(m, 'mesh_job_duration_seconds_count{capability="dur-many-99",outcome="completed"}'),
      ).toBeUndefined();
      expect(value(m, 'mesh_job_duration_seconds_count{capability="other",outcome="completed"}')).toBe(1);
    } finally {
      await r.stop();
    }
  });
});

import { createDb } from '@mesh/db';
import { useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStore } from '../../apps/registry/src/services/jobs.ts';

const db = useTestDatabase();
const pools: ReturnType<typeof createDb>['sql'][] = [];
beforeAll(() => {
  for (let i = 0; i < 16; i++) pools.push(createDb(db.url, { max: 1, applicationName: `claimer-${i}` }).sql);
});
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
});

describe('claim under concurrency (16 claimers on their own connections)', () => {
  it('claims each of 2,000 jobs exactly once, FIFO per capability, with no empty answer while unlocked work remains', async () => {
    const sql = pools[0] as (typeof pools)[number];
    const caps = ['alpha', 'beta'];
    // 2,000 jobs, interleaved over two capabilities, with strictly increasing submission times.
    await sql`
      insert into jobs (id, capability, submitted_by, submitted_payload, submitted_at)
      select gen_random_uuid(), case when i % 2 = 0 then 'alpha' else 'beta' end, 'bench', jsonb_build_object('i', i),
             now() - interval '1 hour' + i * interval '1 millisecond'
      from generate_series(1, 2000) as i`;
    const order = new Map(
      (await sql<{ id: string; i: number }[]>`select id, (submitted_payload->>'i')::int as i from jobs`).map(
        (r) => [r.id, r.i],
      ),
    );
    const stores = pools.map(
      (p, i) => new JobStore(p, { defaultLeaseSeconds: 300, requireClaimEpoch: false, replicaId: `r${i}` }),
    );
    const claims: { id: string; claimer: number; epoch: number; attempt: number }[] = [];
    const empties: { capability: string; remaining: number }[] = [];
    await Promise.all(
      stores.map(async (store, claimer) => {
        const capability = caps[claimer % 2] as string;
        for (;;) {
          const got = await store.claim(capability, `claimer-${claimer}`, 1 + (claimer % 3));
          if (got.length === 0) {
            const remaining = ((
              await pools[claimer]!<{ remaining: number }[]>`
              select count(*)::int as remaining from jobs where capability = ${capability} and owner_instance_id is null`
            )[0]?.remaining ?? 0) as number;
            if (remaining === 0) return;
            empties.push({ capability, remaining });
            continue;
          }
          for (const j of got)
            claims.push({ id: j.id, claimer, epoch: j.claim_epoch, attempt: j.attempt_count });
        }
      }),
    );
    // Exactly once.
    expect(claims).toHaveLength(2000);
    expect(new Set(claims.map((c) => c.id)).size).toBe(2000);
    expect(claims.every((c) => c.epoch === 1 && c.attempt === 1)).toBe(true);
    // FIFO: every claimer receives its capability's jobs in submission order.
    for (let claimer = 0; claimer < 16; claimer++) {
      const seq = claims.filter((c) => c.claimer === claimer).map((c) => order.get(c.id) as number);
      expect(seq).toEqual([...seq].sort((a, b) => a - b));
    }
    // An empty answer is only possible when what remains is held by the other claimers of that capability.
    for (const e of empties) expect(e.remaining).toBeLessThanOrEqual(8 * 3);
    const unclaimed = ((
      await sql<{ unclaimed: number }[]>`
      select count(*)::int as unclaimed from jobs where owner_instance_id is null`
    )[0]?.unclaimed ?? 0) as number;
    expect(unclaimed).toBe(0);
  }, 120_000);

  it('with one claimer, hands out jobs in exact submission order', async () => {
    const sql = pools[0] as (typeof pools)[number];
    await sql`
      insert into jobs (id, capability, submitted_by, submitted_payload, submitted_at)
      select gen_random_uuid(), 'fifo', 's', jsonb_build_object('i', i), '2026-01-01'::timestamptz + (i / 3) * interval '1 second'
      from generate_series(1, 60) as i`;
    const expected = (
      await sql<{ id: string }[]>`select id from jobs where capability = 'fifo' order by submitted_at, id`
    ).map((r) => r.id);
    const store = new JobStore(sql, { defaultLeaseSeconds: 300, requireClaimEpoch: false, replicaId: 'r' });
    const got: string[] = [];
    for (;;) {
      const batch = await store.claim('fifo', 'solo', 7);
      if (batch.length === 0) break;
      got.push(...batch.map((j) => j.id));
    }
    expect(got).toEqual(expected);
  });
});

import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { parked } from '../support/long-poll.ts';
import { until } from '../support/until.ts';

/**
 * Long-poll claims and admission (issues 16 and 17 together): a claim with
 * `wait_ms` is admitted as a claim, then moves to the long-poll lane before it
 * parks, so parked idle workers never hold the claim lane's slots (a replica
 * with 4 claim slots keeps serving claims and submissions beside 40 parked
 * claims), and its wait extends the database bound (a claim parked for 3 s on
 * a replica whose bound is 1 s answers 200, not 503).
 */
const db = useTestDatabase();
let r: RegistryProcess;

beforeAll(async () => {
  r = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: 'lp-admission',
    env: {
      MESH_MAX_IN_FLIGHT: '4',
      MESH_MAX_QUEUED: '4',
      MESH_DB_REQUEST_TIMEOUT: '1s',
      MESH_OUTAGE_GRACE: '0',
    },
  });
}, 60_000);
afterAll(async () => {
  await r?.stop();
});

describe('long-poll claims under admission', () => {
  it('park in the long-poll lane, beyond the claim slots and past the database bound', async () => {
    const waitMs = 3_000;
    const started = performance.now();
    const parkedClaims = Array.from({ length: 40 }, (_, i) =>
      call(r.url, 'POST', '/jobs/claim', {
        capability: 'lp-adm-idle',
        instance_id: `w${i}`,
        wait_ms: waitMs,
      }),
    );
    await until('40 claims parked', async () => (await parked(r)) === 40);
    // The claim lane (4 slots) is free: a plain claim and a submission answer at once.
    const plain = await call(r.url, 'POST', '/jobs/claim', { capability: 'lp-adm-other', instance_id: 'x' });
    expect(plain.status).toBe(200);
    expect(plain.body.claimed).toEqual([]);
    const submitted = await call(r.url, 'POST', '/jobs', {
      capability: 'lp-adm-other',
      submitted_by: 't',
      submitted_payload: {},
    });
    expect(submitted.status).toBe(201);
    const answers = await Promise.all(parkedClaims);
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(a.body.claimed).toEqual([]);
    }
    // They answered at the wait's end, not at the 1 s database bound.
    expect(performance.now() - started).toBeGreaterThanOrEqual(waitMs - 50);
    expect(await parked(r)).toBe(0);
  });
});

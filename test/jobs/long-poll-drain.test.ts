import { spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { describe, expect, it } from 'vitest';
import { meshctl } from '../meshctl/support.ts';
import { call } from '../support/http.ts';
import { claim, longWait, submit, untilParked, useReplicaPair } from '../support/long-poll.ts';
import { until } from '../support/until.ts';

/**
 * Drain stays a barrier with long-poll claims (issue 17 item 1): parked
 * claims answer empty at once when their replica or the fleet starts
 * draining, and at shutdown; they hold no claim, so `drain --wait` ends; a
 * draining replica claims nothing for them. Real processes, real database.
 */
const db = useTestDatabase();
const fast = { MESH_REPLICA_HEARTBEAT: '200ms' };
const { a, b, row, capability } = useReplicaPair(db, 'lpd', fast);

describe('drain and shutdown with parked claims', () => {
  it('drain answers parked claims at once, claims nothing on the draining replica, and drain --wait ends', async () => {
    const cap = capability();
    const parkedClaim = claim(a, { capability: cap, instance_id: 'w-drain', wait_ms: longWait });
    await untilParked(a, 1);
    expect((await call(a.url, 'POST', '/admin/drain')).body).toMatchObject({ draining: true });
    expect(await parkedClaim).toEqual({ status: 200, draining: 'true', body: { claimed: [] } });
    // A long-poll on a draining replica does not park; work queued now stays queued.
    const id = await submit(b, cap);
    expect(await claim(a, { capability: cap, instance_id: 'w-drain', wait_ms: longWait })).toEqual({
      status: 200,
      draining: 'true',
      body: { claimed: [] },
    });
    expect(await row(id)).toMatchObject({ owner_instance_id: null, attempt_count: 0 });
    // Parked claims hold nothing: drain --wait finds no live claim of this replica.
    const waited = await meshctl([
      'registry',
      'drain',
      '--wait',
      '--poll-interval',
      '1',
      '--registry-url',
      a.url,
    ]);
    expect(waited.code).toBe(0);
    expect(waited.stdout).toContain('All jobs drained');
    // Resumed, it claims again (the job queued during the drain).
    await call(a.url, 'DELETE', '/admin/drain');
    expect(
      (await claim(a, { capability: cap, instance_id: 'w-drain', wait_ms: longWait })).body.claimed[0].id,
    ).toBe(id);
  }, 60_000);

  it('a fleet drain answers claims parked on every replica', async () => {
    const cap = capability();
    const onA = claim(a, { capability: cap, instance_id: 'w-fa', wait_ms: longWait });
    const onB = claim(b, { capability: cap, instance_id: 'w-fb', wait_ms: longWait });
    await Promise.all([untilParked(a, 1), untilParked(b, 1)]);
    const fleet = await meshctl(['registry', 'drain', '--all', '--registry-url', a.url]);
    expect(fleet.code).toBe(0);
    for (const answer of await Promise.all([onA, onB])) {
      expect(answer).toEqual({ status: 200, draining: 'true', body: { claimed: [] } });
    }
    expect((await meshctl(['registry', 'resume', '--all', '--registry-url', a.url])).code).toBe(0);
    await until('fleet resumed', async () => {
      const [x, y] = await Promise.all([
        call(a.url, 'GET', '/admin/drain'),
        call(b.url, 'GET', '/admin/drain'),
      ]);
      return !x.body.draining && !y.body.draining;
    });
  }, 60_000);

  it('shutdown answers a parked claim at once and does not wait for its wait to end', async () => {
    const c = await spawnRegistry({ databaseUrl: db.url, replicaId: 'lp-c', env: fast });
    const cap = capability();
    const parkedClaim = claim(c, { capability: cap, instance_id: 'w-stop', wait_ms: longWait });
    await untilParked(c, 1);
    const stopped = c.stop(20_000);
    expect(await parkedClaim).toEqual({ status: 200, draining: 'true', body: { claimed: [] } });
    // SIGTERM then SIGKILL after 20 s: a clean exit code says it did not need the kill.
    expect(await stopped).toEqual({ code: 0, signal: null });
    expect(c.logs()).not.toContain('shutdown timeout');
  }, 60_000);
});

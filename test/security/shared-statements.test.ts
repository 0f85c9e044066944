import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { startTestRegistry, type TestRegistry } from '../support/registry-app.ts';
import { timeSvc } from '../support/sample-agents.ts';

// Issue 18, item 3: concurrent claims of a capability share one statement, and
// plain completions another; one caller's bad request must fail only itself.
const db = useTestDatabase();
let r: RegistryProcess;
let local: TestRegistry;

beforeAll(async () => {
  r = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: 'shared',
    // 400 claims at once: admitted, not shed (shedding has its own test,
    // test/chaos/overload.test.ts); this one is about shared statements.
    env: { MESH_MAX_QUEUED: '1000', MESH_MAX_QUEUE_WAIT: '60s' },
  });
  local = await startTestRegistry(db.url);
});
afterAll(async () => {
  await local.close();
});

async function submit(base: string, capability: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await call(base, 'POST', '/jobs', {
      capability,
      submitted_by: 's',
      submitted_payload: { i },
    });
    ids.push(res.body.id);
  }
  return ids;
}

const nested = (depth: number): string => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

describe('one caller cannot fail the shared statements of others (issue 18)', () => {
  it('200 claims with a 20 KB instance_id beside 200 normal ones: the bad ones get 400, every normal one 200', async () => {
    const ids = await submit(r.url, 'shared-claim', 200);
    const huge = 'i'.repeat(20 * 1024);
    const claims = Array.from({ length: 400 }, (_, i) =>
      call(r.url, 'POST', '/jobs/claim', {
        capability: 'shared-claim',
        instance_id: i % 2 ? huge : `worker-${i}`,
      }),
    );
    const answers = await Promise.all(claims);
    const bad = answers.filter((_, i) => i % 2);
    const good = answers.filter((_, i) => i % 2 === 0);
    expect(new Set(bad.map((a) => a.status))).toEqual(new Set([400]));
    expect(bad[0]?.body).toEqual({
      error: 'instance_id must be at most 256 characters',
      code: 'bad_request',
      timestamp: expect.any(String),
    });
    expect(new Set(good.map((a) => a.status))).toEqual(new Set([200]));
    const claimed = good.flatMap((a) => a.body.claimed.map((j: { id: string }) => j.id));
    expect(claimed.sort()).toEqual([...ids].sort());
  });

  it('a 10 KB result nested 5,000 deep is refused with 400 and normal completions beside it succeed', async () => {
    const ids = await submit(r.url, 'shared-done', 100);
    const claimed = (
      await call(r.url, 'POST', '/jobs/claim', { capability: 'shared-done', instance_id: 'w', max_jobs: 100 })
    ).body.claimed as { id: string; claim_epoch: number }[];
    expect(claimed).toHaveLength(100);
    const deep = nested(5_000);
    expect(deep.length).toBeGreaterThan(10_000);
    const answers = await Promise.all(
      claimed.map(async (j, i) => {
        const delta = `{"id":"${j.id}","claim_epoch":${j.claim_epoch},"status":"completed","result":${i % 2 ? deep : '{"ok":true}'}}`;
        const res = await fetch(`${r.url}/jobs/batch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: `{"instance_id":"w","deltas":[${delta}]}`,
        });
        return { status: res.status, body: (await res.json()) as { error?: string } };
      }),
    );
    const bad = answers.filter((_, i) => i % 2);
    const good = answers.filter((_, i) => i % 2 === 0);
    expect(new Set(bad.map((a) => a.status))).toEqual(new Set([400]));
    expect(bad[0]?.body.error).toBe('Invalid JSON payload: nested deeper than 128 levels');
    expect(good.map((a) => a.body)).toEqual(good.map(() => ({ accepted: 1, rejected: [] })));
    const done = await call(r.url, 'GET', `/jobs/${claimed[0]?.id}`);
    expect(done.body).toMatchObject({ status: 'completed', result: { ok: true } });
    expect(ids).toHaveLength(100);
  });

  it('300 HEAD heartbeats of registered agents beside 100 HEAD /heartbeat/%00: every one of the 300 succeeds (issue 30 finding 4)', async () => {
    // Was: the NUL ids joined the shared heartbeat statement, PostgreSQL refused
    // it, and every heartbeat beside them failed (318 of 400).
    const ids = Array.from({ length: 300 }, (_, i) => `hb-nul-${i}`);
    for (const id of ids) {
      const reg = await call(r.url, 'POST', '/heartbeat', { ...timeSvc, agent_id: id, version: '1.0.0' });
      expect(reg.status).toBe(200);
    }
    const head = (id: string) =>
      fetch(`${r.url}/heartbeat/${id}`, { method: 'HEAD' }).then((res) => res.status);
    const all = await Promise.all(
      Array.from({ length: 400 }, (_, i) =>
        i % 4 === 3 ? head('%00') : head(ids[i - Math.floor(i / 4)] as string),
      ),
    );
    const good = all.filter((_, i) => i % 4 !== 3);
    const bad = all.filter((_, i) => i % 4 === 3);
    expect(good).toHaveLength(300);
    expect(good.filter((s) => s !== 200 && s !== 202)).toEqual([]);
    // An id no agent can have is an unknown agent, as in MCP Mesh: 410.
    expect(new Set(bad)).toEqual(new Set([410]));
  });

  it('if a shared claim statement fails anyway, its claims run one by one and only the culprit fails', async () => {
    const ids = await submit(r.url, 'fallback-claim', 3);
    // Straight to the service, past the route's checks: a NUL PostgreSQL refuses.
    const first = local.jobs.claim('fallback-claim', 'w-first', 1); // runs alone, at once
    const queued = [
      local.jobs.claim('fallback-claim', 'w-a', 1),
      local.jobs.claim('fallback-claim', 'bad\u0000id', 1),
      local.jobs.claim('fallback-claim', 'w-b', 1),
    ]; // these three share the next statement
    const [a, bad, b] = await Promise.allSettled(queued);
    expect((await first).map((j) => j.id)).toEqual([ids[0]]);
    expect(bad?.status).toBe('rejected');
    expect(a).toMatchObject({ status: 'fulfilled', value: [{ id: ids[1] }] });
    expect(b).toMatchObject({ status: 'fulfilled', value: [{ id: ids[2] }] });
    // One alone, one shared by three (failed), then the three alone.
    expect(local.jobs.statementStats.claim).toEqual({ requests: 1 + 3 + 3, statements: 1 + 1 + 3 });
  });

  it('if a shared delta statement cannot even be serialised, only the culprit fails', async () => {
    const ids = await submit(r.url, 'fallback-done', 4);
    const claimed = await local.jobs.claim('fallback-done', 'w', 4);
    expect(claimed.map((j) => j.id).sort()).toEqual([...ids].sort());
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const delta = (i: number, result: unknown) => ({
      id: claimed[i]?.id,
      claim_epoch: claimed[i]?.claim_epoch,
      status: 'completed',
      result,
    });
    // Two run at once (two delta statements in flight); the next two share one.
    const first = [
      local.jobs.applyDeltas('w', [delta(0, { n: 0 })]),
      local.jobs.applyDeltas('w', [delta(3, { n: 3 })]),
    ];
    const [ok, bad] = await Promise.allSettled([
      local.jobs.applyDeltas('w', [delta(1, { n: 1 })]),
      local.jobs.applyDeltas('w', [delta(2, cyclic)]),
    ]);
    expect(await Promise.all(first)).toEqual([
      { accepted: 1, rejected: [] },
      { accepted: 1, rejected: [] },
    ]);
    expect(local.jobs.statementStats.delta).toEqual({ requests: 4, statements: 3 });
    expect(ok).toEqual({ status: 'fulfilled', value: { accepted: 1, rejected: [] } });
    expect(bad.status).toBe('rejected');
  });
});

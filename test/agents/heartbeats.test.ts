import { describe, expect, it } from 'vitest';
import { useTestRegistry } from '../support/registry-app.ts';

/**
 * Shared heartbeat statements (issue 17, services/heartbeats.ts): concurrent
 * heartbeats are one statement, and a full heartbeat that repeats the stored
 * registration only refreshes timestamps. What agents see must not change.
 */
const r = useTestRegistry();

const register = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  r.call(
    'POST',
    '/heartbeat',
    { version: '1.0.0', runtime: 'typescript', namespace: 'default', ...body },
    headers,
  );
const head = (id: string) => r.call('HEAD', `/heartbeat/${id}`);

interface Stamp {
  agent_id: string;
  status: string;
  updated_at: Date;
  last_full_refresh: Date;
}
const stamps = async (ids: string[]) =>
  new Map(
    (
      await r.sql<Stamp[]>`select agent_id, status, updated_at, last_full_refresh from agents
                           where agent_id = any(${ids}::text[])`
    ).map((s) => [s.agent_id, s]),
  );

describe('coalesced heartbeats', () => {
  it('concurrent HEAD heartbeats share statements and refresh every agent; unknown and unhealthy ones get 410', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `co-beat-${i}`);
    for (const id of ids) await register({ agent_id: id, tools: [] });
    await register({ agent_id: 'co-sick-1', tools: [] });
    await r.call('DELETE', '/agents/co-sick-1');
    // Everyone's timestamps an hour back, so that a refresh shows.
    await r.sql`update agents set updated_at = now() - interval '1 hour'
                where agent_id = any(${[...ids, 'co-sick-1']}::text[])`;
    const before = { ...r.agents.heartbeats.statementStats.heartbeat };
    const answers = await Promise.all([
      ...ids.map((id) => head(id)),
      head('co-nobody'),
      head('co-sick-1'),
      head(ids[0] as string), // the same agent twice in one statement
    ]);
    const after = r.agents.heartbeats.statementStats.heartbeat;
    expect(after.requests - before.requests).toBe(ids.length + 3);
    // Fewer statements than requests: they were shared.
    expect(after.statements - before.statements).toBeLessThan(ids.length + 3);
    for (const a of answers.slice(0, ids.length)) expect([200, 202]).toContain(a.status);
    expect(answers[ids.length]?.status).toBe(410);
    expect(answers[ids.length + 1]?.status).toBe(410);
    expect([200, 202]).toContain(answers[ids.length + 2]?.status);
    const now = await stamps([...ids, 'co-sick-1']);
    for (const id of ids) {
      const s = now.get(id) as Stamp;
      expect(s.status).toBe('healthy');
      expect(Date.now() - s.updated_at.getTime()).toBeLessThan(60_000);
    }
    // A heartbeat never brings an unhealthy agent back (it must register again).
    expect(now.get('co-sick-1')).toMatchObject({ status: 'unhealthy' });
    expect(Date.now() - (now.get('co-sick-1') as Stamp).updated_at.getTime()).toBeGreaterThan(3_000_000);
  });

  it('the health monitor spares the agents a shared statement refreshed and takes the silent one', async () => {
    const ids = ['mon-a-1', 'mon-b-1', 'mon-c-1'];
    for (const id of ids) await register({ agent_id: id, tools: [] });
    await r.sql`update agents set updated_at = now() - interval '1 hour' where agent_id = any(${ids}::text[])`;
    await Promise.all([head('mon-a-1'), head('mon-b-1')]);
    const unhealthy = await r.agents.markSilentUnhealthy();
    expect(unhealthy).toContain('mon-c-1');
    expect(unhealthy).not.toContain('mon-a-1');
    expect(unhealthy).not.toContain('mon-b-1');
    expect((await head('mon-c-1')).status).toBe(410);
    expect((await head('mon-a-1')).status).not.toBe(410);
  });

  it('counts pending work per name group in a shared statement, only claimable work', async () => {
    await register({
      agent_id: 'grp-1',
      name: 'grp',
      tools: [{ function_name: 'f', capability: 'grp-cap' }],
    });
    await register({ agent_id: 'grp-2', name: 'grp', tools: [] });
    await register({ agent_id: 'solo-1', name: 'solo', tools: [] });
    for (let i = 0; i < 3; i++)
      await r.call('POST', '/jobs', { capability: 'grp-cap', submitted_by: 's', submitted_payload: {} });
    await r.call('POST', '/jobs/claim', { capability: 'grp-cap', instance_id: 'grp-1' });
    const [a, b, c] = await Promise.all([head('grp-1'), head('grp-2'), head('solo-1')]);
    // grp-2 declares no tool itself: its name group does.
    expect(a?.headers.get('x-mesh-pending-jobs')).toBe('2');
    expect(b?.headers.get('x-mesh-pending-jobs')).toBe('2');
    expect(c?.headers.get('x-mesh-pending-jobs')).toBeNull();
  });
});

describe('unchanged full heartbeats', () => {
  const body = {
    agent_id: 'full-1',
    name: 'full',
    http_host: '127.0.0.1',
    http_port: 9301,
    tools: [{ function_name: 'use', capability: 'full-user', dependencies: [{ capability: 'full-dep' }] }],
  };

  it('refresh the timestamps, answer as before and resolve dependencies afresh', async () => {
    const first = await register(body, { 'x-mesh-sdk-version': '0.2.0' });
    expect(first.body.message).toBe('Agent registered via heartbeat');
    expect(first.body.dependencies_resolved.use[0].status).toBe('unresolved');
    await r.sql`update agents set updated_at = now() - interval '1 hour', last_full_refresh = now() - interval '1 hour'
                where agent_id = 'full-1'`;
    const refreshes = r.agents.heartbeats.statementStats.refresh.requests;
    // Another agent joining changes the topology: 202 until a full heartbeat.
    await register({
      agent_id: 'full-dep-1',
      http_host: '127.0.0.1',
      http_port: 9302,
      tools: [{ function_name: 'd', capability: 'full-dep' }],
    });
    expect((await head('full-1')).status).toBe(202);
    const again = await register(body, { 'x-mesh-sdk-version': '0.2.0' });
    expect(r.agents.heartbeats.statementStats.refresh.requests).toBe(refreshes + 2);
    expect(again.body).toEqual({
      agent_id: 'full-1',
      status: 'success',
      message: 'Agent updated via heartbeat',
      timestamp: expect.any(String),
      dependencies_resolved: {
        use: [
          {
            agent_id: 'full-dep-1',
            capability: 'full-dep',
            endpoint: 'http://127.0.0.1:9302',
            function_name: 'd',
            status: 'available',
          },
        ],
      },
      llm_tools: {},
    });
    const s = (await stamps(['full-1'])).get('full-1') as Stamp;
    expect(Date.now() - s.updated_at.getTime()).toBeLessThan(60_000);
    expect(Date.now() - s.last_full_refresh.getTime()).toBeLessThan(60_000);
    expect((await head('full-1')).status).toBe(200);
    // The fresh resolution is stored: /agents reads it.
    const listed = (await r.call('GET', '/agents')).body.agents.find(
      (a: { id: string }) => a.id === 'full-1',
    );
    expect(listed).toMatchObject({ total_dependencies: 1, dependencies_resolved: 1, sdk_version: '0.2.0' });
  });

  it('a changed registration, another SDK version or an unhealthy agent take the full path', async () => {
    await register(body, { 'x-mesh-sdk-version': '0.2.0' });
    // Other tools: stored.
    await register(
      { ...body, tools: [{ function_name: 'use2', capability: 'full-user-2' }] },
      { 'x-mesh-sdk-version': '0.2.0' },
    );
    const caps = await r.sql`select capability from agent_capabilities where agent_id = 'full-1'`;
    expect(caps.map((c) => c.capability)).toEqual(['full-user-2']);
    // Another SDK version: stored.
    await register(
      { ...body, tools: [{ function_name: 'use2', capability: 'full-user-2' }] },
      { 'x-mesh-sdk-version': '0.3.0' },
    );
    const [row] = await r.sql`select sdk_version from agents where agent_id = 'full-1'`;
    expect(row?.sdk_version).toBe('0.3.0');
    // Unregistered, then the same body again: healthy again, and the topology changed for the others.
    await register({ agent_id: 'full-watch-1', tools: [] });
    expect((await head('full-watch-1')).status).toBe(200);
    await r.call('DELETE', '/agents/full-1');
    expect((await head('full-watch-1')).status).toBe(202);
    await register({ agent_id: 'full-watch-1', tools: [] });
    const back = await register(
      { ...body, tools: [{ function_name: 'use2', capability: 'full-user-2' }] },
      { 'x-mesh-sdk-version': '0.3.0' },
    );
    expect(back.body.status).toBe('success');
    expect((await stamps(['full-1'])).get('full-1')?.status).toBe('healthy');
    expect((await head('full-watch-1')).status).toBe(202);
  });

  it('concurrent registrations of one agent with two bodies leave stored tools matching its capabilities', async () => {
    const body = (cap: string) => ({ agent_id: 'race-1', tools: [{ function_name: 'f', capability: cap }] });
    await register(body('race-a'));
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 8 }, (_, i) => register(body(i % 2 ? 'race-b' : 'race-a'))));
      const [row] = await r.sql<{ stored: string; caps: string[] }[]>`
        select registration->'tools'->0->>'capability' as stored,
               array(select capability from agent_capabilities where agent_id = 'race-1') as caps
        from agents where agent_id = 'race-1'`;
      expect(row?.caps).toEqual([row?.stored]);
      // The same body as the stored one now takes the refresh path and changes nothing;
      // the other one is stored.
      const other = row?.stored === 'race-a' ? 'race-b' : 'race-a';
      await register(body(other));
      const caps = await r.sql`select capability from agent_capabilities where agent_id = 'race-1'`;
      expect(caps.map((c) => c.capability)).toEqual([other]);
    }
  });

  it('concurrent full heartbeats of new and known agents all register', async () => {
    const known = Array.from({ length: 10 }, (_, i) => `mix-known-${i}`);
    for (const id of known)
      await register({ agent_id: id, tools: [{ function_name: 'f', capability: 'mix' }] });
    const fresh = Array.from({ length: 10 }, (_, i) => `mix-new-${i}`);
    const answers = await Promise.all(
      [...known, ...fresh].map((id) =>
        register({ agent_id: id, tools: [{ function_name: 'f', capability: 'mix' }] }),
      ),
    );
    expect(answers.map((a) => a.body.message)).toEqual([
      ...known.map(() => 'Agent updated via heartbeat'),
      ...fresh.map(() => 'Agent registered via heartbeat'),
    ]);
    const all = await stamps([...known, ...fresh]);
    expect([...all.values()].filter((s) => s.status === 'healthy')).toHaveLength(20);
    const caps = await r.sql`select count(*)::int as n from agent_capabilities where capability = 'mix'`;
    expect(caps[0]?.n).toBe(20);
  });
});

describe('heartbeat writes (0004_agents_heartbeat_hot)', () => {
  it('update agent rows in place (HOT): no index covers the heartbeat timestamps', async () => {
    // The invariant itself: no index of agents names a heartbeat timestamp, as a
    // key, an included column, an expression or a predicate.
    const covering = await r.sql<{ index: string }[]>`
      select i.indexrelid::regclass::text as index
      from pg_index i
      where i.indrelid = 'agents'::regclass
        and (exists (select 1 from pg_attribute a
                     where a.attrelid = i.indrelid and a.attnum = any(i.indkey)
                       and a.attname in ('updated_at', 'last_full_refresh'))
             or pg_get_expr(i.indexprs, i.indrelid) ~ '(updated_at|last_full_refresh)'
             or pg_get_expr(i.indpred, i.indrelid) ~ '(updated_at|last_full_refresh)')`;
    expect(covering).toEqual([]);
    // And its effect: with room on the page (earlier tests' dead row versions
    // vacuumed away; a full page makes any update non-HOT), both heartbeat
    // writes are HOT. Counted as this transaction's own difference.
    await register({ agent_id: 'hot-1', tools: [{ function_name: 'f', capability: 'hot' }] });
    await r.sql`vacuum agents`;
    const counts = await r.sql.begin(async (tx) => {
      const read = async () => {
        const [row] = await tx<{ upd: number; hot: number }[]>`
          select n_tup_upd::int as upd, n_tup_hot_upd::int as hot from pg_stat_xact_user_tables where relname = 'agents'`;
        return row ?? { upd: 0, hot: 0 };
      };
      const before = await read();
      await tx`update agents set updated_at = now() where agent_id = 'hot-1' and status = 'healthy'`;
      await tx`update agents set updated_at = now(), last_full_refresh = now() where agent_id = 'hot-1'`;
      const after = await read();
      return { upd: after.upd - before.upd, hot: after.hot - before.hot };
    });
    expect(counts).toEqual({ upd: 2, hot: 2 });
  });
});

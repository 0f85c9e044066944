import { limits } from '@mesh/protocol';
import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';

// Issue 18, item 2: one registration on the anonymous main port must not be
// able to wedge the registry for everyone.
const db = useTestDatabase();
let r: RegistryProcess;
let sql: postgres.Sql;

beforeAll(async () => {
  sql = postgres(db.url, { max: 1, onnotice: () => {} });
  r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'bounds' });
});
afterAll(async () => {
  await sql.end();
});

const register = (body: Record<string, unknown>) => call(r.url, 'POST', '/heartbeat', body);
const badRequest = (message: RegExp) => ({
  error: expect.stringMatching(message),
  code: 'bad_request',
  timestamp: expect.any(String),
});
const long = 'x'.repeat(limits.maxIdentifierLength + 1);

describe('registration bounds (issue 18)', () => {
  it('refuses 300,000 empty tools (a 900 KB body) with 400, storing nothing', async () => {
    const tools = `[${Array(300_000).fill('{}').join(',')}]`;
    const res = await fetch(`${r.url}/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"agent_id":"flood","tools":${tools}}`,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(badRequest(/^at most 256 tools per agent, got more than 2560$/));
    expect(await sql`select 1 from agents where agent_id = 'flood'`).toHaveLength(0);
  });

  it('refuses 2,000 dependencies on one tool (capability "") with 400', async () => {
    const res = await register({
      agent_id: 'deps-flood',
      tools: [{ function_name: 'f', dependencies: Array(2_000).fill({ capability: '' }) }],
    });
    expect(res.status).toBe(400);
    expect(res.body).toEqual(badRequest(/^tools\[0\]\.dependencies: at most 64 dependencies per tool$/));
  });

  it('refuses every over-long identifier and too many tags with 400', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ agent_id: long }, /^agent_id must be at most 256 characters$/],
      [{ agent_id: 'a', name: long }, /^name must be at most 256 characters$/],
      [{ agent_id: 'a', tools: [{ function_name: long }] }, /^tools\[0\]\.function_name must be at most/],
      [{ agent_id: 'a', tools: [{ capability: long }] }, /^tools\[0\]\.capability must be at most/],
      [{ agent_id: 'a', tools: [{ capability: 'c', tags: [long] }] }, /^tools\[0\]\.tags: a tag must be/],
      [
        { agent_id: 'a', tools: [{ capability: 'c', tags: Array(65).fill('t') }] },
        /^tools\[0\]\.tags: at most 64/,
      ],
      [
        { agent_id: 'a', tools: [{ capability: 'c', dependencies: [{ capability: long }] }] },
        /^tools\[0\]\.dependencies\[0\]\.capability must be at most/,
      ],
      [
        {
          agent_id: 'a',
          tools: [{ capability: 'c', dependencies: [{ capability: 'd', tags: [Array(65).fill('t')] }] }],
        },
        /^tools\[0\]\.dependencies\[0\]\.tags: at most 64/,
      ],
    ];
    for (const [body, message] of cases) {
      const res = await register(body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body).toEqual(badRequest(message));
    }
    expect(await sql`select agent_id from agents`).toEqual([]);
  });

  it('accepts a registration at every bound and resolves its 16,384 dependencies against 2,560 providers', async () => {
    // Ten providers of "calc", 256 tools each, then a consumer at the limits.
    for (let i = 0; i < 10; i++) {
      const res = await register({
        agent_id: `calc-${i}`,
        tools: Array.from({ length: limits.maxToolsPerAgent }, (_, t) => ({
          function_name: `calc_${t}`,
          capability: 'calc',
          version: `1.${i}.${t}`,
          tags: Array.from({ length: limits.maxTags }, (_, k) => `t${k}`),
        })),
      });
      expect(res.body.status).toBe('success');
    }
    const tools = Array.from({ length: limits.maxToolsPerAgent }, (_, t) => ({
      function_name: `use_${t}`,
      capability: `use_${t}`,
      dependencies: Array.from({ length: limits.maxDependenciesPerTool }, (_, d) => ({
        capability: d % 2 ? 'calc' : 'nowhere',
        ...(d % 4 === 1 ? { version: '>=1.5.0' } : {}),
      })),
    }));
    const consumer = await register({ agent_id: 'consumer', tools });
    expect(consumer.status).toBe(200);
    expect(Object.keys(consumer.body.dependencies_resolved)).toHaveLength(limits.maxToolsPerAgent);
    expect(consumer.body.dependencies_resolved.use_0.slice(0, 2)).toEqual([
      { agent_id: '', function_name: '', endpoint: '', capability: 'nowhere', status: 'unresolved' },
      {
        agent_id: 'calc-9',
        function_name: 'calc_255',
        endpoint: 'stdio://calc-9',
        capability: 'calc',
        status: 'available',
      },
    ]);
    // Every tool is stored, in order, by the one multi-row insert.
    const stored = await sql<{ function_name: string }[]>`
      select function_name from agent_capabilities where agent_id = 'consumer' order by id`;
    expect(stored.map((s) => s.function_name)).toEqual(tools.map((t) => t.function_name));
    // The registry answered everyone meanwhile and afterwards.
    expect((await call(r.url, 'GET', '/health')).status).toBe(200);
    const listed = await call(r.url, 'GET', '/agents');
    expect(listed.body.count).toBe(11);
    expect(listed.body.truncated).toBeUndefined();
  });

  it('bounds GET /agents to the oldest 1000 agents and says so with "truncated"', async () => {
    await sql`
      insert into agents (agent_id, name, created_at)
      select 'bulk-' || g, 'bulk-' || g, now() + g * interval '1 millisecond' from generate_series(1, 1000) g`;
    const listed = await call(r.url, 'GET', '/agents');
    expect(listed.status).toBe(200);
    expect(listed.body.count).toBe(limits.maxAgentsListed);
    expect(listed.body.agents).toHaveLength(limits.maxAgentsListed);
    expect(listed.body.truncated).toBe(true);
    expect(listed.body.agents[0].id).toBe('calc-0');
  });
});

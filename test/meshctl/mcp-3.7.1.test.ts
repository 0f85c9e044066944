import { type McpRegistry, startMcpRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshctl } from './support.ts';

const db = useTestDatabase();
let mcp: McpRegistry;
let url: string[];

// The real MCP Mesh registry 3.7.1 (optional dev dependency @mcpmesh/cli-linux-x64) on PostgreSQL.
beforeAll(async () => {
  mcp = await startMcpRegistry(db.url);
  url = ['--registry-url', mcp.url];
}, 120_000);
afterAll(async () => {
  await mcp?.stop();
});

const post = async (path: string, body?: unknown) => {
  const res = await fetch(`${mcp.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: wire bodies
  return (await res.json()) as any;
};

describe('our meshctl against the real MCP Mesh registry 3.7.1', () => {
  it('registry status / drain --wait / resume work on the 3.7 wire', async () => {
    const status = await meshctl(['registry', 'status', ...url]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toBe('Registry:    active (normal dispatch)\nLive claims: 0\n');
    expect(JSON.parse((await meshctl(['registry', 'status', '--json', ...url])).stdout)).toEqual({
      draining: false,
      live_claims: 0,
    });

    const { id } = await post('/jobs', { capability: 'mcp-cli', submitted_by: 't', submitted_payload: {} });
    const [claimed] = (await post('/jobs/claim', { capability: 'mcp-cli', instance_id: 'w-1' })).claimed;
    const drain = await meshctl(['registry', 'drain', ...url]);
    expect(drain.code).toBe(0);
    expect(drain.stdout).toContain('Registry draining — new job claims paused\n  Live claims: 1\n');
    const waiting = meshctl(['registry', 'drain', '--wait', '--poll-interval', '1', ...url]);
    await new Promise((res) => setTimeout(res, 1_500));
    await post('/jobs/batch', {
      instance_id: 'w-1',
      deltas: [{ id, claim_epoch: claimed.claim_epoch, status: 'completed', result: {} }],
    });
    const waited = await waiting;
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stdout).toContain('All jobs drained — safe to upgrade/restart');
    const resume = await meshctl(['registry', 'resume', ...url]);
    expect(resume.code).toBe(0);
    expect(resume.stdout).toContain('Registry resumed — job dispatch active');
  }, 180_000);

  it('job status / reclaim / list work; list shows agents', async () => {
    const { id } = await post('/jobs', { capability: 'mcp-cli2', submitted_by: 't', submitted_payload: {} });
    await post('/jobs/claim', { capability: 'mcp-cli2', instance_id: 'w-2' });
    const status = await meshctl(['job', 'status', id, ...url]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^Owner:\s+w-2$/m);
    expect(status.stdout).toMatch(/^Attempts:\s+1 of 2 allowed \(max_retries 1\)$/m);
    const reclaim = await meshctl(['job', 'reclaim', id, ...url]);
    expect(reclaim.code, reclaim.stderr).toBe(0);
    expect(reclaim.stdout).toMatch(/Evicted owner:\s+w-2/);
    const list = await meshctl(['job', 'list', '--capability', 'mcp-cli2', ...url]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${id}\\s+mcp-cli2\\s+working`));

    await post('/heartbeat', {
      agent_id: 'echo-9f8e7d6c',
      name: 'echo',
      version: '1.0.0',
      runtime: 'typescript',
      http_host: '127.0.0.1',
      http_port: 9200,
      tools: [{ function_name: 'echo', capability: 'echo' }],
    });
    const agents = await meshctl(['list', ...url]);
    expect(agents.code, agents.stderr).toBe(0);
    expect(agents.stdout).toMatch(/echo-9f8e7d6c\s+TypeScript\s+Agent\s+healthy/);
  }, 180_000);

  it('commands that need our extensions say plainly that the registry lacks them', async () => {
    for (const args of [
      ['registry', 'replicas'],
      ['registry', 'status', '--all'],
      ['registry', 'drain', '--all', '--wait'],
      ['registry', 'resume', '--all'],
      ['registry', 'forget', 'some-replica'],
    ]) {
      const out = await meshctl([...args, ...url]);
      expect(out.code, args.join(' ')).toBe(1);
      expect(out.stderr, args.join(' ')).toContain('lacks replica discovery');
      expect(out.stderr).toContain('(MCP Mesh 3.7?)');
    }
    // Nothing was drained by the refused fleet commands.
    expect(JSON.parse((await meshctl(['registry', 'status', '--json', ...url])).stdout)).toMatchObject({
      draining: false,
    });
  }, 180_000);
});

import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { freePort, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { describe, expect, it } from 'vitest';

const db = useTestDatabase();

function get(agent: Agent, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', reject);
    req.end();
  });
}

describe('SIGTERM with idle keep-alive clients (issue 20, real process)', () => {
  it('closes idle keep-alive connections at once instead of waiting out --shutdown-timeout', async () => {
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'keepalive',
      adminPort: await freePort(),
      env: { MESH_SHUTDOWN_TIMEOUT: '10s' },
    });
    // A load client's pooled connections, idle after their requests, on both listeners.
    const agent = new Agent({ keepAlive: true, keepAliveMsecs: 60_000, maxSockets: 4 });
    expect(await Promise.all([get(agent, `${r.url}/health`), get(agent, `${r.url}/health`)])).toEqual([
      200, 200,
    ]);
    expect(await get(agent, `${r.adminUrl}/admin/drain`)).toBe(200);
    // And a client that connected but never sent a request.
    const silent = connect(r.port, '127.0.0.1');
    silent.on('error', () => {});
    await new Promise((res) => silent.once('connect', res));
    expect(Object.values(agent.freeSockets).flat().length).toBeGreaterThanOrEqual(2);

    const started = performance.now();
    const exit = await r.stop(15_000);
    const ms = Math.round(performance.now() - started);
    console.log(`SIGTERM → exit with idle keep-alive connections open: ${ms} ms (timeout 10 s)`);
    agent.destroy();
    silent.destroy();
    expect(exit).toEqual({ code: 0, signal: null });
    const messages = r.logRecords().map((x) => x.msg);
    expect(messages).toContain('shutting down');
    expect(messages).toContain('stopped');
    expect(messages).not.toContain('shutdown timeout: closing the connections still open');
    expect(ms).toBeLessThan(5_000);
  }, 60_000);
});

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { freePort, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';

// Issue 18, item 1: the main port is anonymous (MCP Mesh 3.7), and a cancel
// there makes the registry POST to the owner agent's registered endpoint.
const db = useTestDatabase();
let r: RegistryProcess;
let sql: postgres.Sql;
const servers: Server[] = [];

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not reached in time: ${what}`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

/** An HTTP server on 127.0.0.1 recording what reaches it; `answer` decides the reply. */
async function sink(answer: (res: import('node:http').ServerResponse) => void = (res) => res.end('{}')) {
  const received: { method: string; url: string }[] = [];
  const server = createServer((req, res) => {
    received.push({ method: req.method ?? '', url: req.url ?? '' });
    req.resume();
    req.on('end', () => answer(res));
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  servers.push(server);
  return { received, port: (server.address() as AddressInfo).port };
}

const register = (r: RegistryProcess, agentId: string, host: string, port: number) =>
  call(r.url, 'POST', '/heartbeat', {
    agent_id: agentId,
    name: agentId,
    http_host: host,
    http_port: port,
    tools: [{ function_name: 'work', capability: 'work' }],
  });

/** A job pushed to `owner` (owner_instance_id), then cancelled anonymously on the main port. */
async function pushAndCancel(r: RegistryProcess, owner: string): Promise<string> {
  const created = await call(r.url, 'POST', '/jobs', {
    capability: 'work',
    submitted_by: 'attacker',
    submitted_payload: {},
    owner_instance_id: owner,
  });
  expect(created.status).toBe(201);
  const cancelled = await call(r.url, 'POST', `/jobs/${created.body.id}/cancel`, { reason: 'x' });
  expect(cancelled.body).toEqual({ status: 'cancelled', forwarded_to_instance_id: owner });
  return created.body.id as string;
}

const logged = (r: RegistryProcess, msg: string, jobId: string) =>
  r.logRecords().find((l) => l.msg === msg && l.job_id === jobId);
const fleetDraining = async (r: RegistryProcess) =>
  (await call(r.adminUrl as string, 'GET', '/admin/fleet/drain')).body.fleet_draining as boolean;

beforeAll(async () => {
  sql = postgres(db.url, { max: 1, onnotice: () => {} });
  r = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: 'ssrf',
    adminPort: await freePort(),
    env: { MESH_LOG_LEVEL: 'debug' },
  });
});
afterAll(async () => {
  for (const s of servers) s.close();
  await sql.end();
});

describe('cancel forward cannot be turned against the registry (issue 18)', () => {
  it('refuses an http_host that is not a host at registration, with 400 and the wire body', async () => {
    const adminPort = Number(new URL(r.adminUrl as string).port);
    for (const host of [
      `127.0.0.1:${adminPort}/admin/fleet/drain#`,
      '127.0.0.1:8001',
      'user@127.0.0.1',
      'agent.local/x',
      'agent.local?x',
      'agent.local#x',
      'http://agent.local',
      'agent .local',
      '%31%32%37.0.0.1',
      '2130706433',
    ]) {
      const res = await register(r, 'hostile-1', host, 80);
      expect(res.status, host).toBe(400);
      expect(res.body, host).toEqual({
        error: expect.stringMatching(/^http_host must be a host name or an IP address/),
        code: 'bad_request',
        timestamp: expect.any(String),
      });
    }
    expect((await call(r.url, 'GET', '/agents')).body.agents).toBeNull();
    for (const host of ['127.0.0.1', 'agent-1.svc.cluster.local', '::1', '[::1]', 'my_agent', '10.0.0.5']) {
      expect((await register(r, 'fine-1', host, 9000)).body.status, host).toBe('success');
    }
  });

  it('re-checks the stored host when forwarding: a path-smuggling host stored before the upgrade is never called', async () => {
    const adminPort = Number(new URL(r.adminUrl as string).port);
    expect((await register(r, 'stored-hostile', '127.0.0.1', 9)).status).toBe(200);
    // As an older registry would have stored it.
    await sql`update agents set http_host = ${`127.0.0.1:${adminPort}/admin/fleet/drain#`}, http_port = 1
              where agent_id = 'stored-hostile'`;
    const id = await pushAndCancel(r, 'stored-hostile');
    await until(() => logged(r, 'cancel forward refused', id) !== undefined, 'refusal logged');
    expect(logged(r, 'cancel forward refused', id)).toMatchObject({ why: 'http_host is not a host' });
    expect(await fleetDraining(r)).toBe(false);
  });

  it("never forwards to the registry's own main or admin listener", async () => {
    const ports = [r.port, Number(new URL(r.adminUrl as string).port)];
    for (const [i, port] of ports.entries()) {
      // The IPv4-mapped forms in hex reached the listeners (issue 30 finding 10).
      for (const host of [
        '127.0.0.1',
        'localhost',
        '0.0.0.0',
        '127.0.0.2',
        '::ffff:0:0',
        '0:0:0:0:0:ffff:0:0',
        '::ffff:7f00:1',
        '::ffff:127.0.0.1',
        '[::ffff:0:0]',
      ]) {
        const agent = `self-${i}-${host.replace(/\W+/g, '-').replace(/^-|-$/g, '')}`;
        expect((await register(r, agent, host, port)).status).toBe(200);
        const id = await pushAndCancel(r, agent);
        await until(
          () => logged(r, 'cancel forward refused', id) !== undefined,
          `refusal of ${host}:${port}`,
        );
      }
    }
    expect(await fleetDraining(r)).toBe(false);
  });

  it('does not follow a redirect from the agent endpoint', async () => {
    const adminPort = Number(new URL(r.adminUrl as string).port);
    const next = await sink();
    const redirector = await sink((res) => {
      res.writeHead(307, { location: `http://127.0.0.1:${next.port}/admin/fleet/drain` });
      res.end();
    });
    const toAdmin = await sink((res) => {
      res.writeHead(307, { location: `http://127.0.0.1:${adminPort}/admin/fleet/drain` });
      res.end();
    });
    expect((await register(r, 'redirector', '127.0.0.1', redirector.port)).status).toBe(200);
    expect((await register(r, 'to-admin', '127.0.0.1', toAdmin.port)).status).toBe(200);
    const id = await pushAndCancel(r, 'redirector');
    const id2 = await pushAndCancel(r, 'to-admin');
    await until(() => logged(r, 'cancel forwarded', id) !== undefined, 'forward answered');
    await until(() => logged(r, 'cancel forwarded', id2) !== undefined, 'forward answered');
    expect(redirector.received).toEqual([{ method: 'POST', url: `/jobs/${id}/cancel` }]);
    expect(logged(r, 'cancel forwarded', id)).toMatchObject({ status: 307 });
    expect(next.received).toEqual([]);
    expect(await fleetDraining(r)).toBe(false);
  });

  it('still forwards to a well-formed agent endpoint, at the job path built with the URL API', async () => {
    const agent = await sink();
    expect((await register(r, 'good-agent', 'localhost', agent.port)).status).toBe(200);
    const id = await pushAndCancel(r, 'good-agent');
    await until(() => agent.received.length === 1, 'forward received');
    expect(agent.received).toEqual([{ method: 'POST', url: `/jobs/${id}/cancel` }]);
  });
});

describe('--cancel-forward restricts forward targets (issue 18)', () => {
  it('with a CIDR list forwards only inside it, and with off forwards nothing', async () => {
    const agent = await sink();
    const limited = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'cidr',
      args: ['--cancel-forward', '10.0.0.0/8,fd00::/8'],
    });
    expect((await register(limited, 'outside-cidr', '127.0.0.1', agent.port)).status).toBe(200);
    const id = await pushAndCancel(limited, 'outside-cidr');
    await until(() => logged(limited, 'cancel forward refused', id) !== undefined, 'refusal logged');
    expect(logged(limited, 'cancel forward refused', id)).toMatchObject({ why: 'outside the allowed CIDRs' });
    await limited.stop();

    const off = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'off',
      env: { MESH_CANCEL_FORWARD: 'off' },
      args: ['--log-level', 'debug'],
    });
    const id2 = await pushAndCancel(off, 'outside-cidr');
    // The cancel itself still works; a second cancel of the same job is refused as terminal.
    expect((await call(off.url, 'POST', `/jobs/${id2}/cancel`)).status).toBe(409);
    expect(agent.received).toEqual([]);
    await off.stop();
  });
});

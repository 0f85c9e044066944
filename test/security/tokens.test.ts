import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, RegistryClient, RegistryError, waitForJob } from '@mesh/sdk';
import { freePort, type RegistryProcess, runRegistry, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mainPortRoutes } from '../../apps/registry/src/access.ts';
import { meshctl } from '../meshctl/support.ts';

// Issue 16, item 5 (and issue 18's token files): bearer tokens on the main
// port by role, several at once for rotation, from flags, env and files.
const db = useTestDatabase();
const dir = mkdtempSync(join(tmpdir(), 'mesh-tokens-'));
const agentOld = 'agent-token-old-1';
const agentNew = 'agent-token-new-2';
const clientToken = 'client-token-from-file';
const adminToken = 'admin-token-from-file';
const clientFile = join(dir, 'client-tokens');
const adminFile = join(dir, 'admin-token');
writeFileSync(clientFile, `# client tokens, one per line\n\n${clientToken}\n`);
writeFileSync(adminFile, `${adminToken}\n`);
let r: RegistryProcess;

beforeAll(async () => {
  r = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: 'tokens',
    adminPort: await freePort(),
    args: ['--agent-token', `${agentOld},${agentNew}`, '--admin-token-file', adminFile],
    env: { MESH_CLIENT_TOKEN_FILE: clientFile },
  });
});
afterAll(async () => {
  await r?.stop();
});

const send = async (method: string, path: string, token?: string, base = r.url) => {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: method === 'GET' || method === 'HEAD' || method === 'DELETE' ? undefined : '{}',
  });
  const text = await res.text();
  return { status: res.status, challenge: res.headers.get('www-authenticate'), text };
};

/** A concrete path for each protected route pattern. */
const concrete = (re: RegExp) =>
  re.source
    .replace(/\\\//g, '/')
    .replace(/\[\^\/\]\+/g, '00000000-0000-0000-0000-000000000000')
    .replace('(claim|batch|leases|signals)', 'claim')
    .replace(/^\^|\$$/g, '');

describe('main-port tokens (issue 16, item 5)', () => {
  it('the listening line says how many tokens each role has, never the tokens', () => {
    const line = r.logRecords().find((l) => l.msg === 'listening');
    expect(line?.tokens).toEqual({ admin: 1, agent: 2, client: 1 });
    expect(r.logs()).not.toContain(agentOld);
    expect(r.logs()).not.toContain(clientToken);
  });

  it.each(mainPortRoutes.map((route) => [route.method, concrete(route.path), route.roles.join('+')]))(
    '%s %s (%s): 401 with the wire body and a Bearer challenge without a token, past it with one',
    async (method, path, roles) => {
      for (const missing of [undefined, 'wrong-token-123', '']) {
        const res = await send(method, path, missing);
        expect(res.status, `${method} ${path} with ${missing}`).toBe(401);
        expect(res.challenge).toBe('Bearer realm="mesh-registry"');
        if (method !== 'HEAD') {
          expect(JSON.parse(res.text)).toEqual({
            error: expect.stringContaining('token'),
            code: 'unauthorized',
            timestamp: expect.any(String),
          });
        }
      }
      // The job list is an operator route: with admin tokens set, only they open it.
      const listing = method === 'GET' && path === '/jobs';
      const right = listing ? [] : roles.includes('agent') ? [agentOld, agentNew] : [clientToken];
      if (listing) expect((await send(method, path, clientToken)).status).toBe(401);
      for (const token of [...right, adminToken]) {
        expect((await send(method, path, token)).status, `${method} ${path} with ${token}`).not.toBe(401);
      }
      // A token of the other role does not open a one-role route.
      if (roles === 'agent') expect((await send(method, path, clientToken)).status).toBe(401);
      if (roles === 'client') expect((await send(method, path, agentOld)).status).toBe(401);
    },
  );

  it('/health, /ready, / and /metrics stay open for probes and scrapers', async () => {
    for (const path of ['/health', '/ready', '/', '/metrics'])
      expect((await send('GET', path)).status).toBe(200);
    expect((await send('HEAD', '/health')).status).toBe(200);
  });

  it('admin routes take the admin token from its file; agent and client tokens do not open them', async () => {
    const admin = r.adminUrl as string;
    expect((await send('GET', '/admin/drain', adminToken, admin)).status).toBe(200);
    for (const t of [undefined, agentOld, clientToken]) {
      expect((await send('GET', '/admin/drain', t, admin)).status).toBe(401);
    }
  });

  it('an SDK agent and a consumer with tokens run a job end to end; without one the consumer gets 401', async () => {
    const agentClient = new RegistryClient({ urls: [r.url], token: agentNew });
    const consumer = new RegistryClient({ urls: [r.url], token: clientToken });
    const agent = new Agent({ client: agentClient, name: 'token-agent', heartbeatIntervalMs: 200 });
    agent.worker({ capability: 'token-echo', handler: async ({ payload }) => ({ echoed: payload.text }) });
    await agent.start();
    try {
      const { id } = await consumer.submit({
        capability: 'token-echo',
        submitted_by: 't',
        submitted_payload: { text: 'hi' },
      });
      expect(await waitForJob(consumer, id, { timeoutMs: 30_000 })).toMatchObject({
        status: 'completed',
        result: { echoed: 'hi' },
        owner_instance_id: agent.id,
      });
      const anonymous = new RegistryClient({ urls: [r.url], attempts: 1 });
      const refused = await anonymous
        .submit({ capability: 'token-echo', submitted_by: 't', submitted_payload: {} })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(RegistryError);
      expect((refused as RegistryError).status).toBe(401);
    } finally {
      await agent.stop();
    }
  });

  it('the SDK reads MESH_TOKEN_FILE when no token is given', async () => {
    const file = join(dir, 'sdk-token');
    writeFileSync(file, `# for the consumer\n${clientToken}\n`);
    process.env.MESH_TOKEN_FILE = file;
    try {
      const client = new RegistryClient({ urls: [r.url] });
      const { id } = await client.submit({
        capability: 'token-none',
        submitted_by: 't',
        submitted_payload: {},
      });
      expect((await client.getJob(id)).status).toBe('working');
    } finally {
      delete process.env.MESH_TOKEN_FILE;
    }
  });

  it('meshctl sends --token-file / MESH_TOKEN on the main port, and hints at it on a 401', async () => {
    const file = join(dir, 'meshctl-token');
    writeFileSync(file, `${clientToken}\n`);
    const submitted = await meshctl([
      'job',
      'submit',
      'token-cli',
      '--payload',
      '{"a":1}',
      '--registry-url',
      r.url,
      '--token-file',
      file,
      '--json',
    ]);
    expect(submitted.code, submitted.stderr).toBe(0);
    const id = JSON.parse(submitted.stdout).id as string;
    const status = await meshctl(['job', 'status', id, '--registry-url', r.url], {
      env: { MESH_TOKEN: clientToken },
    });
    expect(status.code, status.stderr).toBe(0);
    const refused = await meshctl(['job', 'status', id, '--registry-url', r.url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('401');
    expect(refused.stderr).toContain('--token-file');
  });
});

describe('token configuration', () => {
  it('refuses a token file it cannot read, an empty one, and short tokens (exit 2)', async () => {
    const empty = join(dir, 'empty');
    writeFileSync(empty, '# nothing\n\n');
    for (const [args, problem] of [
      [['--agent-token-file', join(dir, 'missing')], /--agent-token-file: cannot read .*missing: ENOENT/],
      [['--client-token-file', empty], /--client-token-file: no tokens in .*empty given/],
      [['--agent-token', 'short'], /--agent-token: every token must be at least 8 characters/],
      [['--admin-token', 'has space in it'], /--admin-token: tokens must be printable ASCII without spaces/],
    ] as const) {
      const res = await runRegistry({ databaseUrl: db.url, args: [...args] });
      expect(res.code).toBe(2);
      expect(res.output).toMatch(problem);
    }
  });
});

import { request } from 'node:http';
import { freePort, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Issue 30 finding 6: in the default configuration (no admin token) a page of
// another origin drained the replica and the fleet (no-cors fetch, text/plain
// form), and `Host: attacker.example` answered 200, so a DNS-rebinding page
// could read /ui/api/*. The admin routes now refuse both, token or not.
const db = useTestDatabase();
let r: RegistryProcess;
let shared: RegistryProcess;
let adminPort: number;

beforeAll(async () => {
  adminPort = await freePort();
  [r, shared] = await Promise.all([
    spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'origin',
      adminPort,
      args: ['--admin-hosts', 'mesh-admin.example,.svc.cluster.local'],
    }),
    // No admin port: the admin routes share the main port (the 3.7 layout).
    spawnRegistry({ databaseUrl: db.url, replicaId: 'origin-shared' }),
  ]);
});
afterAll(async () => {
  await Promise.all([r?.stop(), shared?.stop()]);
});

/** A request with the headers as given (Host included), the way a browser or a rebinding page sends them. */
function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body = '',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const draining = async (port: number) =>
  JSON.parse((await send(port, 'GET', '/admin/drain', { Host: `127.0.0.1:${port}` })).body)
    .draining as boolean;
const fleetDraining = async (port: number) =>
  JSON.parse((await send(port, 'GET', '/admin/fleet/drain', { Host: `127.0.0.1:${port}` })).body)
    .fleet_draining as boolean;

describe('the admin routes refuse cross-site requests and foreign Host headers (issue 30, finding 6)', () => {
  it('a cross-site form or no-cors fetch does not drain the replica or the fleet', async () => {
    const host = `127.0.0.1:${adminPort}`;
    const crossSite: Record<string, string>[] = [
      // A text/plain form post: no preflight; the browser sends both headers.
      {
        Host: host,
        Origin: 'http://evil.example',
        'Sec-Fetch-Site': 'cross-site',
        'Content-Type': 'text/plain',
      },
      // A browser without Fetch Metadata: Origin only.
      { Host: host, Origin: 'http://evil.example' },
      // A sandboxed page: Origin null.
      { Host: host, Origin: 'null' },
      // Same site, other origin (another port of the same host).
      { Host: host, Origin: 'http://127.0.0.1:1', 'Sec-Fetch-Site': 'same-site' },
    ];
    for (const headers of crossSite) {
      for (const path of ['/admin/drain', '/admin/fleet/drain']) {
        const res = await send(adminPort, 'POST', path, headers, 'x=1');
        expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(403);
        expect(JSON.parse(res.body)).toMatchObject({ code: 'forbidden' });
      }
    }
    expect(await draining(adminPort)).toBe(false);
    expect(await fleetDraining(adminPort)).toBe(false);
    // Without an admin port the admin routes share the main port: refused there too.
    const res = await send(shared.port, 'POST', '/admin/drain', {
      Host: `127.0.0.1:${shared.port}`,
      Origin: 'http://evil.example',
      'Sec-Fetch-Site': 'cross-site',
    });
    expect(res.status).toBe(403);
    expect(await draining(shared.port)).toBe(false);
    // The main routes of the shared port are not admin routes: a cross-site read of /health still answers.
    expect(
      (await send(shared.port, 'GET', '/health', { Host: 'anything.example', Origin: 'http://evil.example' }))
        .status,
    ).toBe(200);
  });

  it('a foreign Host (DNS rebinding) reads nothing and changes nothing', async () => {
    for (const [method, path] of [
      ['GET', '/ui/api/session'],
      ['GET', '/ui/api/jobs'],
      ['GET', '/admin/drain'],
      ['GET', '/ui'],
      ['POST', '/admin/drain'],
    ] as const) {
      const res = await send(adminPort, method, path, { Host: `attacker.example:${adminPort}` });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body).not.toContain('draining');
    }
    expect(await draining(adminPort)).toBe(false);
  });

  it('meshctl, curl and the dashboard itself still work: IPs, localhost, the configured names, same-origin writes', async () => {
    for (const host of [
      `127.0.0.1:${adminPort}`,
      `localhost:${adminPort}`,
      `[::1]:${adminPort}`,
      `mesh-admin.example:${adminPort}`,
      `mesh-registry-admin.mesh.svc.cluster.local:${adminPort}`,
    ]) {
      expect((await send(adminPort, 'GET', '/ui/api/session', { Host: host })).status, host).toBe(200);
    }
    // The dashboard's own write: same origin.
    const host = `localhost:${adminPort}`;
    const drained = await send(adminPort, 'POST', '/admin/drain', {
      Host: host,
      Origin: `http://${host}`,
      'Sec-Fetch-Site': 'same-origin',
    });
    expect(drained.status).toBe(200);
    expect(await draining(adminPort)).toBe(true);
    // No browser headers at all (meshctl, curl): allowed.
    expect((await send(adminPort, 'DELETE', '/admin/drain', { Host: `127.0.0.1:${adminPort}` })).status).toBe(
      200,
    );
    expect(await draining(adminPort)).toBe(false);
  });
});

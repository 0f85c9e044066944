import { freePort, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { meshctl } from './support.ts';

// Issue 20: the admin URL found from the main URL where the registry can say
// it. /health names the admin listener's port (never a host: the caller adds it
// to the address it used), and meshctl uses it when --admin-url is not given.

const db = useTestDatabase();
const stops: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const stop of stops) await stop();
});

describe('admin URL discovery', () => {
  it('/health names the admin port; meshctl finds the admin routes there without --admin-url', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'disc-1', adminPort: await freePort() });
    stops.push(() => r.stop());
    const adminPort = Number(new URL(r.adminUrl as string).port);
    const health = await call(r.url, 'GET', '/health');
    expect(health.body.admin_port).toBe(adminPort);
    // The main port still refuses admin routes: discovery is what makes meshctl work.
    expect((await fetch(`${r.url}/admin/drain`)).status).toBe(404);

    const status = await meshctl(['registry', 'status', '--registry-url', r.url, '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ replica_id: 'disc-1', draining: false });
    const drain = await meshctl(['registry', 'drain', '--registry-url', r.url, '--json']);
    expect(drain.code, drain.stderr).toBe(0);
    expect((await call(r.adminUrl as string, 'GET', '/admin/drain')).body.draining).toBe(true);
    const resume = await meshctl(['registry', 'resume', '--registry-url', r.url]);
    expect(resume.code, resume.stderr).toBe(0);
    expect((await call(r.adminUrl as string, 'GET', '/admin/drain')).body.draining).toBe(false);
  });

  it('--advertise-admin-port false hides it: meshctl then needs --admin-url, and says so', async () => {
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'disc-2',
      adminPort: await freePort(),
      env: { MESH_ADVERTISE_ADMIN_PORT: 'false' },
    });
    stops.push(() => r.stop());
    expect((await call(r.url, 'GET', '/health')).body).not.toHaveProperty('admin_port');
    const hidden = await meshctl(['registry', 'status', '--registry-url', r.url]);
    expect(hidden.code).not.toBe(0);
    expect(hidden.stderr).toMatch(/admin/i);
    const given = await meshctl([
      'registry',
      'status',
      '--registry-url',
      r.url,
      '--admin-url',
      r.adminUrl as string,
    ]);
    expect(given.code, given.stderr).toBe(0);
  });

  it('without an admin listener /health names no port and admin routes stay on the main URL', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'disc-3' });
    stops.push(() => r.stop());
    expect((await call(r.url, 'GET', '/health')).body).not.toHaveProperty('admin_port');
    const status = await meshctl(['registry', 'status', '--registry-url', r.url, '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ replica_id: 'disc-3' });
  });
});

import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshctl } from './support.ts';

// Issue 18, item 5: meshctl sends the admin token only to the origins the
// operator gave; a replica URL read from the fleet table (which anyone with
// database access can write) does not collect it unless --trust-fleet-urls.
const db = useTestDatabase();
const token = 'origin-admin-token';
const file = join(mkdtempSync(join(tmpdir(), 'meshctl-origins-')), 'admin-token');
writeFileSync(file, `# the operator's token\n${token}\n`);
let r: RegistryProcess;
let planted: Server;
let sql: postgres.Sql;
const seen: (string | null)[] = [];

beforeAll(async () => {
  r = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: 'origins',
    adminPort: await freePort(),
    env: { MESH_ADMIN_TOKEN_FILE: file },
    // A replica is live for 10 heartbeats: a long one keeps the planted row live
    // through a meshctl run on a loaded machine.
    args: ['--replica-heartbeat', '10s'],
  });
  // A "replica" whose row was planted in the fleet table: it records what it is sent.
  planted = createServer((req, res) => {
    seen.push(req.headers.authorization ?? null);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ draining: false, replica_id: 'planted', live_claims: 0 }));
  });
  await new Promise<void>((done) => planted.listen(0, '127.0.0.1', done));
  const url = `http://127.0.0.1:${(planted.address() as AddressInfo).port}`;
  sql = postgres(db.url, { max: 1, onnotice: () => {} });
  await sql`insert into registry_replicas (replica_id, boot_id, version, schema_version, main_url, admin_url)
            values ('planted', gen_random_uuid(), '0.2.0', 1, ${url}, ${url})`;
});
afterAll(async () => {
  planted?.close();
  await sql?.end();
  await r?.stop();
});

/** Runs `registry status --all` while keeping the planted row live (it is heartbeated by no one else). */
async function statusAll(extra: string[], env: Record<string, string> = {}) {
  const keepLive = setInterval(() => {
    void sql`update registry_replicas set last_seen_at = now() where replica_id = 'planted'`;
  }, 200);
  try {
    await sql`update registry_replicas set last_seen_at = now() where replica_id = 'planted'`;
    return await meshctl(
      [
        'registry',
        'status',
        '--all',
        '--json',
        '--registry-url',
        r.url,
        '--admin-url',
        r.adminUrl as string,
        ...extra,
      ],
      { env },
    );
  } finally {
    clearInterval(keepLive);
  }
}

describe('meshctl sends the admin token only where the operator said (issue 18)', () => {
  it('--admin-token-file: the given admin URL gets the token, the planted replica URL does not', async () => {
    seen.length = 0;
    const res = await statusAll(['--admin-token-file', file]);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { replicas: { replica_id: string; drain: unknown }[] };
    expect(out.replicas.map((x) => x.replica_id).sort()).toEqual(['origins', 'planted']);
    expect(out.replicas.find((x) => x.replica_id === 'origins')?.drain).toMatchObject({ draining: false });
    expect(seen).toEqual([null]);
  });

  it('MESH_ADMIN_TOKEN_FILE and --trust-fleet-urls: the fleet URLs get it too', async () => {
    seen.length = 0;
    const res = await statusAll(['--trust-fleet-urls'], { MESH_ADMIN_TOKEN_FILE: file });
    expect(res.code, res.stderr).toBe(0);
    expect(seen).toEqual([`Bearer ${token}`]);
  });

  it('a 401 from a fleet URL that got no token says why, and how to trust it', async () => {
    const refusing = createServer((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"error":"missing or wrong admin token","code":"unauthorized","timestamp":"x"}');
    });
    await new Promise<void>((done) => refusing.listen(0, '127.0.0.1', done));
    const url = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`;
    await sql`update registry_replicas set admin_url = ${url} where replica_id = 'planted'`;
    try {
      const res = await statusAll(['--admin-token-file', file]);
      const out = JSON.parse(res.stdout) as {
        replicas: { replica_id: string; live: boolean; error?: string }[];
      };
      const row = out.replicas.find((x) => x.replica_id === 'planted');
      expect(row?.live).toBe(true);
      expect(row?.error).toContain('no token sent to this URL from the fleet table (--trust-fleet-urls)');
    } finally {
      refusing.close();
    }
  });

  it('an unreadable --admin-token-file is a usage error', async () => {
    const res = await meshctl([
      'registry',
      'status',
      '--registry-url',
      r.url,
      '--admin-token-file',
      `${file}.missing`,
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--admin-token-file: cannot read');
  });
});

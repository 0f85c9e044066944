import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The registry's executable in this repository. */
export const registryBin = fileURLToPath(
  new URL('../../../apps/registry/bin/mesh-registry.js', import.meta.url),
);

export interface SpawnRegistryOptions {
  /** `DATABASE_URL`; omit to let the registry start its embedded PostgreSQL. */
  databaseUrl?: string;
  replicaId?: string;
  /** Main port; 0 (the default) lets the OS pick one, read back from the log. */
  port?: number;
  /** Admin port; 0 picks one, undefined disables the admin listener. */
  adminPort?: number;
  env?: Record<string, string | undefined>;
  args?: string[];
  /** Executable to run with node; defaults to this repo's registry. */
  bin?: string;
  /** Flags for node itself (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** A command that runs node for it, e.g. `['prlimit', '--nofile=400:400']`. */
  launcher?: string[];
  /** How long to wait for `/ready`. */
  readyTimeoutMs?: number;
  /** Do not wait for readiness (for processes expected to fail). */
  waitForReady?: boolean;
  /**
   * Lead a process group of its own, as a command run from a terminal does, so
   * that `signalGroup` reaches it and everything it started in that group.
   */
  detached?: boolean;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RegistryProcess {
  pid: number;
  replicaId: string;
  /** `http://127.0.0.1:<port>` of the main listener. */
  url: string;
  port: number;
  adminUrl: string | undefined;
  /** Everything the process wrote so far, stdout and stderr interleaved. */
  logs(): string;
  /** Parsed JSON log lines written to stdout. */
  logRecords(): Record<string, unknown>[];
  exited: Promise<Exit>;
  /** SIGTERM, then SIGKILL if it has not exited after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<Exit>;
  /** SIGKILL. */
  kill(): Promise<Exit>;
  /**
   * Sends `signal` to the whole process group, as a terminal's Ctrl-C does
   * (only with `detached`), and waits for the exit (SIGKILL after `timeoutMs`).
   */
  signalGroup(signal: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
  /** SIGSTOP: the process stays alive but does nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Last resort: never leave a registry behind when the test process dies.
    process.once('exit', () => {
      for (const c of live) {
        c.kill('SIGCONT');
        c.kill('SIGKILL');
      }
    });
  }
}

/** Stops every registry process this test worker started (SIGKILL after a short SIGTERM grace). */
export async function stopAllRegistries(): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGCONT');
          child.kill('SIGTERM');
        }),
    ),
  );
}

function buildEnv(options: SpawnRegistryOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // A test's registry must not pick up the developer's own configuration.
  for (const key of Object.keys(env)) {
    if (/^(MESH_|MCP_MESH_)/.test(key) || key === 'DATABASE_URL') delete env[key];
  }
  Object.assign(env, {
    HOST: '127.0.0.1',
    PORT: String(options.port ?? 0),
    MESH_LOG_LEVEL: 'info',
    MESH_LOG_FORMAT: 'json',
  });
  if (options.databaseUrl) env.DATABASE_URL = options.databaseUrl;
  if (options.replicaId) env.MESH_REPLICA_ID = options.replicaId;
  if (options.adminPort !== undefined) env.MESH_ADMIN_PORT = String(options.adminPort);
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** node's arguments: its own flags, the registry's executable, then the registry's. */
function buildArgs(options: SpawnRegistryOptions): string[] {
  return [...(options.nodeArgs ?? []), options.bin ?? registryBin, ...(options.args ?? [])];
}

/** Spawns the registry with piped output and tracks it (`track`), so it never outlives the worker. */
function startChild(options: SpawnRegistryOptions): ChildProcess {
  const [command, ...lead] = [...(options.launcher ?? []), process.execPath];
  const child = spawn(command as string, [...lead, ...buildArgs(options)], {
    env: buildEnv(options),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  track(child);
  return child;
}

/** The ports of the registry's `listening` log record. */
interface Listening {
  port: number;
  adminPort?: number;
}

/** What the registry wrote: `text()` so far, its parsed JSON log records, and its ports once it listens. */
interface CapturedOutput {
  text(): string;
  records: Record<string, unknown>[];
  listening: Promise<Listening>;
}

/** Collects the child's stdout and stderr, parsing each complete stdout line that is a JSON log record. */
function captureOutput(child: ChildProcess): CapturedOutput {
  let output = '';
  const records: Record<string, unknown>[] = [];
  let pending = '';
  let resolveListening: (v: Listening) => void = () => {};
  const listening = new Promise<Listening>((r) => {
    resolveListening = r;
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    output += text;
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        records.push(record);
        if (record.msg === 'listening' && typeof record.port === 'number') {
          resolveListening({
            port: record.port,
            adminPort: typeof record.admin_port === 'number' ? record.admin_port : undefined,
          });
        }
      } catch {
        // not a log record
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  return { text: () => output, records, listening };
}

/** The handle of a started registry, its url and ports unset until it listens (`waitUntilReady`). */
function createHandle(
  child: ChildProcess,
  options: SpawnRegistryOptions,
  captured: CapturedOutput,
): RegistryProcess {
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });

  const signalAndWait = (signal: NodeJS.Signals, timeoutMs: number, group = false): Promise<Exit> => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.kill('SIGCONT');
    if (group && child.pid) process.kill(-child.pid, signal);
    else child.kill(signal);
    return exited.finally(() => clearTimeout(timer));
  };

  return {
    pid: child.pid ?? -1,
    replicaId: options.replicaId ?? '',
    url: '',
    port: 0,
    adminUrl: undefined,
    logs: captured.text,
    logRecords: () => captured.records,
    exited,
    stop: (timeoutMs = 15_000) => signalAndWait('SIGTERM', timeoutMs),
    kill: () => signalAndWait('SIGKILL', 0),
    signalGroup: (signal, timeoutMs = 15_000) => {
      if (!options.detached) throw new Error('signalGroup needs a registry spawned with `detached: true`');
      return signalAndWait(signal, timeoutMs, true);
    },
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
  };
}

/** Polls `/ready` every 50 ms until it answers 200 or `deadline` (epoch ms) passes. */
async function pollReady(url: string, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    const res = await fetch(`${url}/ready`).catch(() => undefined);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Waits until the registry logs `listening` (then sets the handle's url and
 * ports) and `/ready` answers 200, within `timeoutMs` in all; kills it and
 * throws, with its output, if it exits first or the time runs out.
 */
async function waitUntilReady(
  handle: RegistryProcess,
  listening: Promise<Listening>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const fail = (why: string) =>
    new Error(`registry (pid ${handle.pid}) ${why}\n--- registry output ---\n${handle.logs()}`);
  const early = handle.exited.then((e) => {
    throw fail(`exited before it was ready (code ${e.code}, signal ${e.signal})`);
  });
  // The timer is cleared once the race is decided: a pending one kept every
  // benchmark process alive for up to a minute after its last registry stopped.
  const timeout = async <T>(p: Promise<T>) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        early,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(fail(`was not ready within ${timeoutMs} ms`)),
            Math.max(0, deadline - Date.now()),
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  try {
    const { port, adminPort } = await timeout(listening);
    handle.port = port;
    handle.url = `http://127.0.0.1:${port}`;
    handle.adminUrl = adminPort ? `http://127.0.0.1:${adminPort}` : undefined;
    await timeout(pollReady(handle.url, deadline));
  } catch (err) {
    await handle.kill();
    throw err;
  }
  early.catch(() => {});
}

/**
 * Starts a registry as a child process and waits until `/ready` answers 200.
 * The process is stopped when the test ends (`stopAllRegistries`, wired into
 * the integration project's setup file) or, at worst, when the test worker exits.
 *
 * @example
 * const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'r1' });
 * await fetch(`${r.url}/health`);
 * r.pause(); r.resume(); await r.stop();
 */
export async function spawnRegistry(options: SpawnRegistryOptions = {}): Promise<RegistryProcess> {
  const child = startChild(options);
  const captured = captureOutput(child);
  const handle = createHandle(child, options, captured);
  if (options.waitForReady === false) return handle;
  await waitUntilReady(handle, captured.listening, options.readyTimeoutMs ?? 60_000);
  return handle;
}

export interface RunResult extends Exit {
  output: string;
  durationMs: number;
}

/** Runs the registry to completion (for invocations expected to exit), with a time limit. */
export async function runRegistry(
  options: SpawnRegistryOptions & { timeoutMs?: number },
): Promise<RunResult> {
  const started = Date.now();
  const handle = await spawnRegistry({ ...options, waitForReady: false });
  const timer = setTimeout(() => void handle.kill(), options.timeoutMs ?? 60_000);
  const exit = await handle.exited;
  clearTimeout(timer);
  return { ...exit, output: handle.logs(), durationMs: Date.now() - started };
}

import { type ChildProcess, execFile as execFileCb, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { migrationsDir } from '@mesh/db';

const execFile = promisify(execFileCb);
const agentFixture = fileURLToPath(new URL('./fixtures/agent.mjs', import.meta.url));

/**
 * A migrations folder holding this release's migrations plus one breaking
 * migration that is never shipped: it renames a column every release so far
 * writes (`jobs.submitted_by`), and declares that only `oldestCompatible` and
 * newer can run on it.
 */
export function breakingMigrationsFixture(oldestCompatible = '9.0.0'): { dir: string; name: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-breaking-'));
  cpSync(migrationsDir, dir, { recursive: true });
  const journalFile = join(dir, 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalFile, 'utf8')) as {
    entries: { idx: number; tag: string; when: number; breakpoints: boolean; version: string }[];
  };
  const idx = journal.entries.length;
  const name = `${String(idx).padStart(4, '0')}_fixture_rename_submitted_by`;
  journal.entries.push({ idx, tag: name, when: Date.now(), breakpoints: true, version: '7' });
  writeFileSync(journalFile, JSON.stringify(journal, null, 2));
  writeFileSync(join(dir, `${name}.sql`), 'ALTER TABLE "jobs" RENAME COLUMN "submitted_by" TO "submitter";');
  const declFile = join(dir, 'compatibility.json');
  const decl = JSON.parse(readFileSync(declFile, 'utf8')) as { migrations: Record<string, unknown> };
  decl.migrations[name] = {
    compatibility: 'breaking',
    release: oldestCompatible,
    oldest_compatible: oldestCompatible,
    reason: 'renames jobs.submitted_by, which older releases write (a test fixture, never shipped)',
  };
  writeFileSync(declFile, JSON.stringify(decl, null, 2));
  return { dir, name };
}

/** `mesh_claims_total{outcome="claimed"}` of one replica: jobs it handed out since it started. */
export async function claimsHandedOut(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^mesh_claims_total\{outcome="claimed"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

export type AgentRecord = Record<string, unknown> & { at: number; type: string; agent?: string; sdk: string };

export interface AgentProcess {
  name: string;
  sdk: string;
  records: AgentRecord[];
  output(): string;
  /** SIGSTOP / SIGCONT: a paused agent holds its claims while its leases run out. */
  pause(): void;
  resume(): void;
  /** SIGTERM: the agent finishes or releases its jobs and unregisters. */
  stop(): Promise<number | null>;
  kill(): void;
}

/** Where the workspace SDK's source is: `startAgent(workspaceSdk, …, { nodeArgs: ['--import', 'tsx'] })`. */
export const workspaceSdk = fileURLToPath(new URL('../../packages/sdk/src/index.ts', import.meta.url));

/**
 * Starts `fixtures/agent.mjs` on the SDK at `sdkEntry` (an installed release,
 * or the workspace source with `nodeArgs: ['--import', 'tsx']`); `env` adds
 * variables (e.g. `CAPABILITY`).
 */
export async function startAgent(
  sdkEntry: string,
  urls: string[],
  name: string,
  sdk: string,
  options: { nodeArgs?: string[]; env?: Record<string, string> } = {},
): Promise<AgentProcess & { pid: number }> {
  const child: ChildProcess = spawn(process.execPath, [...(options.nodeArgs ?? []), agentFixture], {
    env: {
      ...process.env,
      SDK_ENTRY: sdkEntry,
      REGISTRY_URLS: urls.join(','),
      AGENT_NAME: name,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const records: AgentRecord[] = [];
  let output = '';
  let pending = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      try {
        records.push(JSON.parse(line) as AgentRecord);
      } catch {
        // not one of ours
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 30_000;
  while (!records.some((r) => r.type === 'started')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`agent ${name} did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pid: child.pid as number,
    name,
    sdk,
    records,
    output: () => output,
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    stop: async () => {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    kill: () => {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    },
  };
}

/** Runs a meshctl binary (an installed release's `dist/cli.js`) to completion. */
export async function runMeshctl(
  bin: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean = { ...process.env };
  for (const k of ['MESH_REGISTRY_URL', 'MESH_ADMIN_URL', 'MESH_ADMIN_TOKEN', 'DATABASE_URL'])
    delete clean[k];
  try {
    const { stdout, stderr } = await execFile(process.execPath, [bin, ...args], {
      env: { ...clean, NO_COLOR: '1', ...env },
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { until } from './targets.ts';

/**
 * Agent processes for process-level SDK tests: `fixtures/slow-agent.ts` run
 * with node + tsx, its JSON lines collected. Tests end them with
 * `killAgents()` (by pid) in `afterEach`/`afterAll`.
 */
const fixture = fileURLToPath(new URL('./fixtures/slow-agent.ts', import.meta.url));
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export type LogRecord = Record<string, unknown> & { event: string; at: number };

export interface AgentProcess {
  pid: number;
  records: LogRecord[];
  output(): string;
  /** True until the process exits. */
  alive(): boolean;
  /** The first record (so far or to come) matching `match`; fails if the process exits first. */
  waitFor(what: string, match: (r: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
}

const children = new Map<number, ChildProcess>();

/** Starts the fixture agent with `env` added to this process's environment. */
export function spawnAgent(env: Record<string, string>): AgentProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid as number;
  children.set(pid, child);
  child.once('exit', () => children.delete(pid));
  const records: LogRecord[] = [];
  let output = '';
  let pending = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      try {
        records.push(JSON.parse(line) as LogRecord);
      } catch {
        // not one of ours
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    pid,
    records,
    output: () => output,
    alive,
    waitFor: (what, match, timeoutMs = 20_000) =>
      until(
        `${what} (agent pid ${pid})`,
        () => {
          const found = records.find(match);
          if (found) return found;
          if (!alive()) throw new Error(`agent pid ${pid} exited early:\n${output}`);
          return undefined;
        },
        timeoutMs,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n--- agent output ---\n${output}`);
      }),
  };
}

/** Ends the agent processes this file started, by pid (resumed first, in case one is stopped). */
export function killAgents(): void {
  for (const [pid, child] of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
}

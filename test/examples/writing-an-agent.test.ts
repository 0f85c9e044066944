import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../support/until.ts';

// docs/writing-an-agent.md walks through examples/writing-an-agent/*.ts: this
// test type-checks them and runs each as the guide says, against a registry,
// so the guide cannot rot. Agents are real processes; task 5 kills one with
// SIGKILL mid-job.

const root = fileURLToPath(new URL('../..', import.meta.url));
const examples = `${root}examples/writing-an-agent/`;
const db = useTestDatabase();
let registry: RegistryProcess;
const children = new Set<ChildProcess>();

interface Run {
  child: ChildProcess;
  out: () => string;
  done: Promise<number | null>;
}

function run(file: string): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', `${examples}${file}`], {
    cwd: root,
    env: { ...process.env, MESH_REGISTRY_URL: registry.url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const done = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  return { child, out: () => out, done };
}

async function consumer(file: string): Promise<string> {
  const r = run(file);
  const code = await r.done;
  expect(code, r.out()).toBe(0);
  return r.out();
}

const startAgent = async (): Promise<Run> => {
  const agent = run('agent.ts');
  await until('the guide agent started', () => agent.out().includes('ready (pid'), 30_000);
  return agent;
};

beforeAll(async () => {
  registry = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: 'guide',
    // The sweep that gives a dead agent's job back runs every second (default 5 s).
    // A fresh registry gives agents its outage grace (60 s) before any sweep takes a
    // job: off here, as the guide says for a first try.
    // A fresh registry gives agents its outage grace (60 s) before any sweep takes a
    // job; off here, as the guide says for a first try.
    env: { MESH_SWEEP_INTERVAL: '1s', MESH_OUTAGE_GRACE: '0' },
  });
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await registry?.stop();
});

describe('docs/writing-an-agent.md: its examples', () => {
  it('type-check under the strict settings of tsconfig.base.json', async () => {
    const tsc = `${root}node_modules/typescript/bin/tsc`;
    const { stdout } = await promisify(execFile)(process.execPath, [tsc, '-p', `${examples}tsconfig.json`], {
      cwd: root,
    }).catch((err: { stdout: string }) => {
      throw new Error(`tsc failed:\n${err.stdout}`);
    });
    expect(stdout).toBe('');
  });

  it('tasks 1-4: progress, cancel of a long handler, a retried failure, requestInput with a schema', async () => {
    const agent = await startAgent();
    try {
      const progress = await consumer('progress.ts');
      for (let i = 1; i <= 5; i++) expect(progress).toContain(`event: step ${i} of 5 done`);
      expect(progress).toContain('progress 100% step 5 of 5');
      expect(progress).toContain('completed {"done":5}');

      const cancel = await consumer('cancel.ts');
      expect(cancel).toMatch(/^cancelled after \d+ ms: cancelled: changed my mind$/m);
      await until(
        'the handler saw the cancel',
        () => /guide-slow: \S+ stopped: .*cancelled/.test(agent.out()),
        10_000,
      );

      const retry = await consumer('retry.ts');
      expect(retry).toContain('retried: completed after 3 attempts {"succeededOnAttempt":3}');
      expect(retry).toContain('fatal: failed after 1 attempt(s): bad payload: nothing to retry');

      const input = await consumer('input.ts');
      expect(input).toContain('asked: Approve a payment of $42?');
      // (jsonb orders keys: shorter first)
      expect(input).toContain('answered: completed {"note":"ok","paid":42}');
      expect(input).toMatch(/rejected: \{"seq":\d+,"issues":\[\{"path":"approved","message":"[^"]+"\}\]/);
      expect(input).toMatch(
        /malformed answer: failed: job \S+: the input does not match its schema: approved: /,
      );
    } finally {
      agent.child.kill('SIGTERM');
      await agent.done;
    }
  });

  it('task 5: kill -9 of the agent mid-job; another agent re-runs it, spending one attempt', async () => {
    const first = await startAgent();
    const crash = run('crash.ts');
    await until(
      'the first agent started the job',
      () => /guide-steps: started \S+ attempt 1/.test(first.out()),
      30_000,
    );
    first.child.kill('SIGKILL');
    expect(await first.done).toBe(null);
    const second = await startAgent();
    try {
      expect(await crash.done, crash.out()).toBe(0);
      expect(second.out()).toMatch(/guide-steps: started \S+ attempt 2/);
      expect(crash.out()).toMatch(/^completed after 2 attempts, \d+ ms: \{"steps":20,"attempt":2\}$/m);
    } finally {
      second.child.kill('SIGTERM');
      await second.done;
    }
  });
});

describe('docs/writing-an-agent.md: its snippets', () => {
  it('every code block marked with <!-- example: FILE --> is still in FILE, verbatim', () => {
    const guide = readFileSync(`${root}docs/writing-an-agent.md`, 'utf8');
    const marked = [...guide.matchAll(/<!-- example: (\S+) -->\n```ts\n([\s\S]*?)```/g)];
    expect(marked.length).toBeGreaterThanOrEqual(9);
    for (const [, file, code] of marked) {
      expect(readFileSync(`${root}${file}`, 'utf8'), `${file} holds the guide's snippet`).toContain(
        (code as string).trimEnd(),
      );
    }
  });
});

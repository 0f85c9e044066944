import { spawn } from 'node:child_process';

/**
 * A load or probe that runs in a process of its own, so that the test's busy
 * event loop is not timed into what it measures (and an attacker's work is not
 * the victim's). The protocol, both sides here: the script prints `started`
 * when it is running, works until its stdin closes, then prints its result as
 * one JSON line and exits 0.
 */
export function startSideProcess<T>(script: string, args: string[]) {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  const started = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => (out.startsWith('started\n') ? resolve() : undefined));
    exited.then((code) => reject(new Error(`${script} exited (${code}) before it started: ${out}`)));
  });
  return {
    /** Resolves once the script is running; rejects if it exits first. */
    started,
    /** Closes its stdin and gives its result; throws unless it exits 0 with one. */
    async stop(): Promise<T> {
      child.stdin.end();
      const code = await exited;
      if (code !== 0) throw new Error(`${script} exited ${code}: ${out}`);
      const last = out.trim().split('\n').at(-1);
      if (!last || last === 'started') throw new Error(`${script} printed no result: ${out}`);
      return JSON.parse(last) as T;
    },
  };
}

/**
 * The script's side: `work` runs while `running()` is true (until stdin
 * closes); what it returns is printed as the result line.
 */
export async function runSideProcess(work: (running: () => boolean) => Promise<unknown>): Promise<void> {
  let stopping = false;
  process.stdin.on('end', () => {
    stopping = true;
  });
  process.stdin.resume();
  process.stdout.write('started\n');
  const result = await work(() => !stopping);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.stdin.pause();
}

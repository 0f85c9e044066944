/**
 * `pnpm bench:start`: how long the registry takes from spawn to its first 200
 * on `/ready`, on an already migrated database, started three ways in one run:
 *
 *   dist    the built release (`installedRelease('current')`) with plain node: what the image runs
 *   tsx     today's workspace start, apps/registry/bin/mesh-registry.js (tsx, its transform cache warm)
 *   tsx-cold the same with TSX_DISABLE_CACHE=1: the first start after a source change
 *
 * Rounds interleave the ways (rotating who goes first) so drift in the shared
 * machine's speed hits all of them; one unmeasured start of each comes first,
 * so every way starts with the OS's file cache and tsx's cache warm. Prints
 * each round and the medians. Benchmarks print figures; they assert nothing.
 *
 *   pnpm bench:start                  7 rounds
 *   pnpm bench:start --rounds 15
 *   pnpm bench:start --json out.json  also write every start as JSON
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { migrate } from '@mesh/db';
import { createDatabase, freePort, installedRelease, registryBin, startTestPostgres } from '@mesh/testkit';
import { procStat, sleep } from './proc.ts';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    json: { type: 'string' },
  },
});

interface Way {
  name: string;
  bin: string;
  env: Record<string, string>;
}

interface Start {
  way: string;
  round: number;
  /** Spawn → first 200 on /ready. */
  readyMs: number;
  /** Spawn → the `listening` log record (its own timestamp; ms resolution). */
  listeningMs: number;
  /** CPU (user + system) the registry process had used when /ready first answered 200. */
  cpuMs: number;
}

/** A process's CPU time (user + system, ms) from /proc/<pid>/stat; NaN off Linux. */
const cpuMs = (pid: number): number => (procStat(pid)?.cpuMicros ?? Number.NaN) / 1000;

const baseEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (/^(MESH_|MCP_MESH_|TSX_)/.test(key) || key === 'DATABASE_URL' || key === 'NODE_OPTIONS')
      delete env[key];
  }
  return env;
};

/**
 * Spawns one registry on a port chosen beforehand, so /ready can be polled
 * from the first millisecond (every 5 ms), and stops it once it answered.
 * (spawnRegistry learns the port from the log and polls every 50 ms: too
 * coarse here.)
 */
async function startOnce(way: Way, databaseUrl: string, round: number): Promise<Start> {
  const port = await freePort();
  const started = performance.now();
  const startedAt = Date.now();
  const child = spawn(process.execPath, [way.bin], {
    env: {
      ...baseEnv(),
      ...way.env,
      DATABASE_URL: databaseUrl,
      HOST: '127.0.0.1',
      PORT: String(port),
      MESH_REPLICA_ID: `start-${way.name}`,
      MESH_LOG_LEVEL: 'info',
      MESH_LOG_FORMAT: 'json',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let listeningMs = Number.NaN;
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    // Timed by the record's own clock (pino's `time`, ms), not by when the pipe delivered it.
    const line = Number.isNaN(listeningMs) && /^\{.*"msg":"listening".*\}$/m.exec(output);
    if (line) listeningMs = (JSON.parse(line[0]) as { time: number }).time - startedAt;
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  try {
    for (;;) {
      if (gone) throw new Error(`${way.name}: the registry exited before it was ready:\n${output}`);
      if (performance.now() - started > 60_000) throw new Error(`${way.name}: not ready in 60 s:\n${output}`);
      const res = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => undefined);
      if (res?.status === 200) {
        const readyMs = performance.now() - started;
        const cpu = cpuMs(child.pid ?? -1);
        // The `listening` line may still be in the pipe when /ready has answered.
        for (let i = 0; i < 40 && Number.isNaN(listeningMs); i++) await sleep(5);
        return { way: way.name, round, readyMs, listeningMs, cpuMs: cpu };
      }
      await res?.arrayBuffer();
      await sleep(5);
    }
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const ms = (x: number) => (Number.isNaN(x) ? '   –' : x.toFixed(0).padStart(5));

async function main() {
  const rounds = Number(args.rounds);
  console.log('installing the current release from packed tarballs (pnpm build, pack, npm install)…');
  const release = await installedRelease('current');
  const ways: Way[] = [
    { name: 'dist', bin: release.registryBin, env: {} },
    { name: 'tsx', bin: registryBin, env: {} },
    { name: 'tsx-cold', bin: registryBin, env: { TSX_DISABLE_CACHE: '1' } },
  ];
  const pg = await startTestPostgres(undefined, { durable: true });
  console.log(`PostgreSQL: ${pg.source}, ${pg.serverVersion}, durable (fsync on); node ${process.version}`);
  const starts: Start[] = [];
  try {
    const db = await createDatabase(pg.adminUrl, { migrated: false });
    await migrate(db.url, { appliedBy: 'bench:start' });
    for (const way of ways) await startOnce(way, db.url, 0); // warm caches, not measured
    console.log('\nround  way        ready ms  listening ms  cpu ms');
    for (let round = 1; round <= rounds; round++) {
      const order = ways.map((_, i) => ways[(i + round) % ways.length] as Way);
      for (const way of order) {
        const s = await startOnce(way, db.url, round);
        starts.push(s);
        console.log(
          `${String(round).padStart(5)}  ${way.name.padEnd(9)}  ${ms(s.readyMs).padStart(8)}  ${ms(s.listeningMs).padStart(12)}  ${ms(s.cpuMs).padStart(6)}`,
        );
      }
    }
    await db.drop();
  } finally {
    await pg.stop();
  }

  console.log(`\nmedians over ${rounds} rounds (spawn → first 200 on /ready)`);
  console.log('way        ready ms  (min–max)      listening ms  cpu ms');
  const medianOf = (way: string, key: 'readyMs' | 'listeningMs' | 'cpuMs') =>
    median(starts.filter((s) => s.way === way).map((s) => s[key]));
  for (const way of ways) {
    const ready = starts.filter((s) => s.way === way.name).map((s) => s.readyMs);
    console.log(
      `${way.name.padEnd(9)}  ${ms(medianOf(way.name, 'readyMs')).padStart(8)}  (${ms(Math.min(...ready)).trim()}–${ms(Math.max(...ready)).trim()})`.padEnd(
        36,
      ) +
        `${ms(medianOf(way.name, 'listeningMs')).padStart(12)}  ${ms(medianOf(way.name, 'cpuMs')).padStart(6)}`,
    );
  }
  const dist = medianOf('dist', 'readyMs');
  console.log(
    `\ntsx / dist: ${(medianOf('tsx', 'readyMs') / dist).toFixed(2)}×; tsx-cold / dist: ${(medianOf('tsx-cold', 'readyMs') / dist).toFixed(2)}×`,
  );
  if (args.json) writeFileSync(args.json, `${JSON.stringify({ node: process.version, starts }, null, 2)}\n`);
}

await main();

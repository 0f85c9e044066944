/**
 * What the benchmarks read about processes (Linux /proc) and the numbers they
 * print: CPU per process group, the PostgreSQL server's processes, RSS,
 * percentiles.
 */
import { readdirSync, readFileSync } from 'node:fs';
import postgres from 'postgres';

// ---- CPU accounting (Linux /proc): where a phase's CPU went, per process group ----
const clockTick = 100; // USER_HZ: 100 on every Linux of our kind
/** A process's ppid and CPU time (user + system, µs) from /proc/<pid>/stat; undefined once it is gone. */
export function procStat(pid: number | string): { ppid: number; cpuMicros: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces: state, ppid, …, utime (12th), stime (13th).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuMicros: ((Number(f[11]) + Number(f[12])) * 1e6) / clockTick };
  } catch {
    return undefined;
  }
}
export const cpuMicros = (pid: number) => procStat(pid)?.cpuMicros ?? 0;
/** The postmaster and every process it started (backends, WAL writer, checkpointer…). */
export function postgresPids(postmaster: number): number[] {
  const pids = [postmaster];
  for (const d of readdirSync('/proc')) {
    if (/^\d+$/.test(d) && procStat(d)?.ppid === postmaster) pids.push(Number(d));
  }
  return pids;
}
interface CpuSnapshot {
  registry: number;
  postgres: Map<number, number>;
  client: number;
}
function snapshotCpu(registryPid: number, postmaster: number): CpuSnapshot {
  const pg = new Map<number, number>();
  if (postmaster > 0) for (const pid of postgresPids(postmaster)) pg.set(pid, cpuMicros(pid));
  const own = process.cpuUsage();
  return { registry: cpuMicros(registryPid), postgres: pg, client: own.user + own.system };
}
/** CPU µs spent between two snapshots: registry, PostgreSQL (all its processes), this load generator. */
function cpuSpent(a: CpuSnapshot, b: CpuSnapshot) {
  let pg = 0;
  for (const [pid, t] of b.postgres) pg += t - (a.postgres.get(pid) ?? 0);
  return { registry: b.registry - a.registry, postgres: pg, client: b.client - a.client };
}
/**
 * Counts CPU from now on: `spent()` is the µs used since by the registry,
 * PostgreSQL (all its processes) and this load generator.
 *
 * @example const cpu = cpuMeter(reg.pid, postmaster); await run(); const { registry } = cpu.spent();
 */
export function cpuMeter(registryPid: number, postmaster: number) {
  const before = snapshotCpu(registryPid, postmaster);
  return { spent: () => cpuSpent(before, snapshotCpu(registryPid, postmaster)) };
}

/** The server's postmaster: the parent of a backend of ours (-1 when it is not on this machine's /proc). */
export async function findPostmaster(url: string): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
    return procStat(row?.pid ?? -1)?.ppid ?? -1;
  } catch {
    return -1;
  } finally {
    await sql.end();
  }
}

/** Resident set size of a process in bytes (/proc/<pid>/status VmRSS), 0 once it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};
export const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

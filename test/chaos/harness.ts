import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '@mesh/db';
import { freePort, type RegistryProcess, spawnRegistry, startTcpProxy } from '@mesh/testkit';
import postgres from 'postgres';
import { checkJobLog, type JobLogRecord } from '../support/job-log.ts';
import { prng } from '../support/prng.ts';
import { type AgentProcess, startAgent, workspaceSdk } from '../upgrade/support.ts';
import { type JobRow, startJobStream } from './stream.ts';

/**
 * The chaos run shared by `test/chaos/chaos.test.ts` (about two minutes in
 * CI) and `pnpm chaos` (a longer soak): three registry replicas and four SDK
 * agent processes on a PostgreSQL of its own (it is restarted), reached
 * through a fault proxy, while a job stream flows. Faults, one at a time,
 * drawn from a seeded PRNG: replicas killed (SIGKILL) and paused
 * (SIGSTOP/SIGCONT), agents killed and paused past their leases, PostgreSQL
 * restarted, partitions, connections reset mid-query, a slow database.
 * Afterwards the job log is checked (test/support/job-log.ts).
 */
export type FaultKind =
  | 'replica_kill'
  | 'replica_pause'
  | 'agent_kill'
  | 'agent_pause'
  | 'postgres_restart'
  | 'partition'
  | 'connection_reset'
  | 'slow_database';

const faultKinds: FaultKind[] = [
  'replica_kill',
  'replica_pause',
  'agent_kill',
  'agent_pause',
  'postgres_restart',
  'partition',
  'connection_reset',
  'slow_database',
];

export interface ChaosOptions {
  /** How long faults are injected; the run then lets everything finish. */
  seconds: number;
  seed: number;
  log?: (line: string) => void;
}

export interface ChaosSummary {
  seed: number;
  seconds: number;
  faults: Record<string, number>;
  jobs: number;
  claims: number;
  rejected_stale_writes: number;
  /** Jobs whose completion notice died with a killed agent (completed in the database; not counted twice). */
  completions_unlogged_owner_killed: number;
  violations: string[];
}

const lease = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runChaos(options: ChaosOptions): Promise<ChaosSummary> {
  const rand = prng(options.seed);
  const log = options.log ?? (() => {});
  const between = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo));
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'mesh-chaos-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const pgOptions = {
    dir,
    database: 'chaos',
    initdbFlags: ['--no-sync'],
    settings: { fsync: 'off', synchronous_commit: 'off', max_connections: '300' },
  };
  let pg: EmbeddedPostgres = await startEmbeddedPostgres(pgOptions);
  cleanups.push(() => pg.stop());
  try {
    const proxy = await startTcpProxy(pg.port);
    cleanups.push(() => proxy.close());
    const dbUrl = proxy.via(pg.url);
    const slots = await Promise.all(
      ['chaos-a', 'chaos-b', 'chaos-c'].map(async (id) => ({
        id,
        port: await freePort(),
        adminPort: await freePort(),
      })),
    );
    const start = (s: (typeof slots)[number]) =>
      spawnRegistry({
        databaseUrl: dbUrl,
        replicaId: s.id,
        port: s.port,
        adminPort: s.adminPort,
        readyTimeoutMs: 60_000,
        args: [
          '--log-level',
          'warn',
          '--default-lease',
          `${lease}s`,
          '--replica-heartbeat',
          '300ms',
          '--sweep-interval',
          '500ms',
          '--agent-timeout',
          '5s',
          '--outage-grace',
          '5s',
          '--db-request-timeout',
          '2s',
        ],
      });
    const replicas = new Map<string, RegistryProcess>();
    for (const s of slots) replicas.set(s.id, await start(s));
    cleanups.push(() => Promise.all([...replicas.values()].map((r) => r.stop())));
    const urls = slots.map((s) => `http://127.0.0.1:${s.port}`);

    const agents: AgentProcess[] = [];
    const killedAgents = new Set<string>();
    let agentN = 0;
    const newAgent = async () => {
      const a = await startAgent(workspaceSdk, urls, `chaos-agent-${agentN++}`, 'workspace', {
        nodeArgs: ['--import', 'tsx'],
        env: { CAPABILITY: 'chaos' },
      });
      agents.push(a);
      return a;
    };
    const live: AgentProcess[] = [];
    for (let i = 0; i < 4; i++) live.push(await newAgent());
    cleanups.push(() => {
      for (const a of agents) a.kill();
    });

    const stream = startJobStream({
      urls,
      capability: 'chaos',
      ratePerSecond: 10,
      maxRetries: 10,
      hold: () => between(20, 400),
    });
    const faults: Record<string, number> = {};
    const deadline = Date.now() + options.seconds * 1000;
    // Rounds of every fault kind, each round in an order drawn from the seed:
    // every kind is exercised even in a short run.
    let round: FaultKind[] = [];
    const starting: Promise<unknown>[] = [];
    while (Date.now() < deadline) {
      await sleep(between(500, 2_000));
      if (round.length === 0) {
        round = [...faultKinds];
        for (let i = round.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [round[i], round[j]] = [round[j] as FaultKind, round[i] as FaultKind];
        }
      }
      const kind = round.shift() as FaultKind;
      faults[kind] = (faults[kind] ?? 0) + 1;
      const slot = slots[Math.floor(rand() * slots.length)] as (typeof slots)[number];
      log(`[chaos] ${new Date().toISOString()} ${kind}${kind.startsWith('replica') ? ` ${slot.id}` : ''}`);
      switch (kind) {
        case 'replica_kill': {
          await replicas.get(slot.id)?.kill();
          await sleep(between(500, 3_000));
          replicas.set(slot.id, await start(slot));
          break;
        }
        case 'replica_pause': {
          const r = replicas.get(slot.id) as RegistryProcess;
          r.pause();
          await sleep(between(1_000, (lease + 2) * 1000));
          r.resume();
          break;
        }
        case 'agent_kill': {
          const i = Math.floor(rand() * live.length);
          const [victim] = live.splice(i, 1);
          if (victim) {
            killedAgents.add(victim.name);
            victim.kill();
          }
          // Its replacement starts in the background (a few seconds under tsx).
          starting.push(newAgent().then((a) => live.push(a)));
          break;
        }
        case 'agent_pause': {
          const a = live[Math.floor(rand() * live.length)];
          if (!a) break;
          a.pause();
          // Past its leases: its jobs are taken over; its late writes must be refused.
          await sleep((lease + 1) * 1000 + between(0, 2_000));
          a.resume();
          break;
        }
        case 'postgres_restart': {
          proxy.drop();
          await pg.stop();
          await sleep(between(200, 1_500));
          pg = await startEmbeddedPostgres(pgOptions);
          proxy.retarget(pg.port);
          break;
        }
        case 'partition': {
          proxy.cut('blackhole');
          await sleep(between(1_000, 4_000));
          proxy.restore();
          break;
        }
        case 'connection_reset':
          proxy.drop();
          break;
        case 'slow_database': {
          proxy.latency(between(100, 250));
          await sleep(between(2_000, 4_000));
          proxy.latency(0);
          break;
        }
      }
    }
    await Promise.all(starting);
    log('[chaos] faults over; letting every job finish');
    await stream.stop();
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    cleanups.push(() => sql.end({ timeout: 1 }));
    const readJobs = () =>
      sql<JobRow[]>`select id, status, claim_epoch, attempt_count, max_retries, owner_instance_id
                    from jobs where capability = 'chaos'`;
    let jobs = await readJobs();
    // Nothing stuck after the faults end: every job reaches a terminal state (bounded).
    const settleBy = Date.now() + 120_000;
    while (
      Date.now() < settleBy &&
      jobs.some((j) => j.status === 'working' || j.status === 'input_required')
    ) {
      await sleep(500);
      jobs = await readJobs();
    }
    const records = () => agents.flatMap((a) => a.records) as JobLogRecord[];
    // Agents retrying a completion whose answer was lost log it only once it is answered.
    const logBy = Date.now() + 30_000;
    while (Date.now() < logBy && checkJobLog(records(), jobs).neverCommitted.length > 0) await sleep(500);
    const report = checkJobLog(records(), jobs);
    // An agent SIGKILLed between its completion's commit and its log line leaves no notice:
    // such a job is completed in the database, by that agent; it is not a violation.
    const ownerOf = new Map(
      jobs.map((j) => [j.id, (j as JobRow & { owner_instance_id: string | null }).owner_instance_id]),
    );
    const killedIds = new Set(
      agents
        .filter((a) => killedAgents.has(a.name))
        .flatMap((a) => a.records.filter((r) => r.type === 'started').map((r) => String(r.agent))),
    );
    const unlogged = report.neverCommitted.filter((id) => killedIds.has(String(ownerOf.get(id))));
    const violations = report.violations.filter(
      (v) => !unlogged.some((id) => v === `job ${id}: no committed completion in the log`),
    );
    const submittedMissing = [...stream.submitted].filter((id) => !jobs.some((j) => j.id === id));
    violations.push(...submittedMissing.map((id) => `submitted job ${id} is missing`));
    return {
      seed: options.seed,
      seconds: options.seconds,
      faults,
      jobs: jobs.length,
      claims: report.claims,
      rejected_stale_writes: report.rejectedStale,
      completions_unlogged_owner_killed: unlogged.length,
      violations,
    };
  } finally {
    for (const f of cleanups.splice(0).reverse()) await Promise.resolve(f()).catch(() => undefined);
  }
}

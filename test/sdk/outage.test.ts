import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient } from '@mesh/sdk';
import {
  freePort,
  type RegistryProcess,
  spawnRegistry,
  type TestDatabase,
  useTestDatabase,
} from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type AgentProcess, killAgents, type LogRecord, spawnAgent } from './agent-process.ts';
import { until } from './targets.ts';

/**
 * A whole-registry outage with jobs in flight, with real processes only
 * (issue #4 "outage grace", DESIGN.md §4.7, reference mcp-mesh-jobs.md §11
 * item 4: MCP Mesh re-claims every job after a restart). Two registry replicas
 * on one database, three SDK agent processes (`fixtures/slow-agent.ts`)
 * holding eight jobs with 3 s leases. Every replica is SIGKILLed for 60 s,
 * twenty leases and agent timeouts, then restarted with the same ids and ports.
 *
 * With the outage grace the agents re-register and renew within it, nothing
 * is taken from them when the sweeps resume, and every job completes exactly
 * once, by its first owner, at claim epoch 1: including the jobs whose
 * handlers finished while no registry could take their results. The control
 * runs the same scenario with the grace off (`MESH_OUTAGE_GRACE=0`) and sees
 * the jobs re-claimed: the grace is what saves them.
 */
const graceDb = useTestDatabase();
// The grace is database-wide state (registry_settings), so the control gets a database of its own.
const controlDb = useTestDatabase();

/** max_duration of every job: a 3 s lease, renewed by the SDK every second. */
const leaseSeconds = 3;
const registryEnv = {
  MESH_SWEEP_INTERVAL: '200ms',
  MESH_HEALTH_CHECK_INTERVAL: '200ms',
  MESH_AGENT_TIMEOUT: '3s',
  // Replicas count as live for 3 beats: a replica restarted after the outage knows it is alone.
  MESH_REPLICA_HEARTBEAT: '200ms',
};
/** The outage. */
const outageMs = 60_000;
/**
 * The grace after it (the default is 60 s). Shorter, to keep the file near two
 * minutes, but longer than the SDK's reconnect backoff (at most 30 s, docs/sdk.md)
 * plus a restart, so agents can make it; and the jobs outlive it, so the sweeps
 * resume while they still run.
 */
const graceMs = 40_000;
/** After the grace: well over a lease and an agent timeout, for a sweep to show what it would take. */
const settleWindowMs = 5_000;
/**
 * The control's outage: shorter than 60 s because it only has to outlast the
 * lease and the agent timeout (3 s each) to lose the jobs without a grace; a
 * longer outage loses them the same way.
 */
const controlOutageMs = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

interface JobRow {
  id: string;
  status: string;
  owner: string | null;
  epoch: number;
  attempts: number;
  result: { by?: string; epoch?: number } | null;
  /** Epoch milliseconds, database clock (the same host as the test's). */
  leaseMs: number | null;
  beatMs: number | null;
  finishedMs: number | null;
}

interface Fleet {
  name: string;
  db: TestDatabase;
  env: Record<string, string>;
  ports: number[];
  replicas: RegistryProcess[];
  agents: { id: string; proc: AgentProcess }[];
  sql: postgres.Sql;
  client: RegistryClient;
  capability: string;
  /** Jobs whose work ends during the outage (when `midFile` appears). */
  short: string[];
  /** Jobs whose work ends when the test says so (`endFile`). */
  long: string[];
  /** Job id → the agent that claimed it before the outage. */
  owner: Map<string, string>;
  midFile: string;
  endFile: string;
}

const fleets: Fleet[] = [];
const dirs: string[] = [];

async function stopFleets(): Promise<void> {
  killAgents();
  for (const f of fleets.splice(0)) {
    await Promise.all(f.replicas.map((r) => r.kill()));
    await f.sql.end({ timeout: 5 });
  }
}
afterEach(stopFleets);
afterAll(async () => {
  await stopFleets();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const startReplicas = (f: Pick<Fleet, 'db' | 'ports' | 'env' | 'name'>) =>
  Promise.all(
    f.ports.map((port, i) =>
      spawnRegistry({ databaseUrl: f.db.url, replicaId: `${f.name}-r${i + 1}`, port, env: f.env }),
    ),
  );

async function jobRows(f: Fleet): Promise<JobRow[]> {
  return f.sql<JobRow[]>`
    select id::text, status, owner_instance_id as owner, claim_epoch::int as epoch,
           attempt_count as attempts, result,
           (extract(epoch from lease_expires_at) * 1000)::float8 as "leaseMs",
           (extract(epoch from last_heartbeat_at) * 1000)::float8 as "beatMs",
           (extract(epoch from finished_at) * 1000)::float8 as "finishedMs"
    from jobs where capability = ${f.capability} order by submitted_at`;
}

async function dbNow(f: Fleet): Promise<number> {
  const [row] = await f.sql<{ now: number }[]>`select (extract(epoch from now()) * 1000)::float8 as now`;
  return row?.now ?? Number.NaN;
}

/** The post-outage grace as the registry recorded it (database clock), if any. */
async function graceWindow(f: Fleet): Promise<{ since: number; until: number } | undefined> {
  const [row] = await f.sql<{ since: number; until: number }[]>`
    select (extract(epoch from updated_at) * 1000)::float8 as since,
           (extract(epoch from (value->>'until')::timestamptz) * 1000)::float8 as until
    from registry_settings where key = 'outage_grace_until'`;
  return row;
}

const agentOf = (f: Fleet, id: string) => {
  const agent = f.agents.find((a) => a.id === id);
  if (!agent) throw new Error(`no agent ${id} in ${f.agents.map((a) => a.id).join(', ')}`);
  return agent;
};

/** Every agent's log lines, each with `by`: the agent that wrote it. */
const allRecords = (f: Fleet): (LogRecord & { by: string })[] =>
  f.agents.flatMap((a) => a.proc.records.map((r) => ({ ...r, by: a.id })));

/**
 * An agent prints its `settled` line after the registry answered its write,
 * so the database can show a job completed a moment before the log says so:
 * wait (bounded) for the line of every completed job before reading the logs.
 */
async function settledLogged(f: Fleet, rows: JobRow[]): Promise<void> {
  const logged = () => {
    const records = allRecords(f);
    return rows
      .filter((row) => row.status === 'completed')
      .every((row) =>
        records.some(
          (r) => r.event === 'notice' && r.type === 'settled' && r.jobId === row.id && r.committed,
        ),
      );
  };
  // On timeout the assertions that follow say what is missing.
  await until('every completed job to be logged as settled', logged, 10_000).catch(() => undefined);
}

/**
 * Two replicas, three agents (concurrency 3 each), eight jobs with 3 s
 * leases, all claimed at epoch 1, started by their owners and renewed at
 * least once: the fleet at work, just before the outage.
 */
async function startFleet(name: string, db: TestDatabase, grace: string): Promise<Fleet> {
  const ports = [await freePort(), await freePort()];
  const env = { ...registryEnv, MESH_OUTAGE_GRACE: grace };
  const replicas = await startReplicas({ name, db, ports, env });
  const urls = replicas.map((r) => r.url);
  const dir = mkdtempSync(join(tmpdir(), `mesh-outage-${name}-`));
  dirs.push(dir);
  const capability = `outage-${name}`;
  const f: Fleet = {
    name,
    db,
    env,
    ports,
    replicas,
    agents: [],
    sql: postgres(db.url, { max: 2, onnotice: () => {} }),
    client: new RegistryClient({ urls }),
    capability,
    short: [],
    long: [],
    owner: new Map(),
    midFile: join(dir, 'mid-outage'),
    endFile: join(dir, 'end'),
  };
  fleets.push(f);
  const procs = ['a', 'b', 'c'].map((letter, i) =>
    spawnAgent({
      // Both replicas, in a different order for the middle agent: no single point the agents lean on.
      MESH_REGISTRY_URL: (i === 1 ? [...urls].reverse() : urls).join(','),
      AGENT_NAME: `${name}-${letter}`,
      CAPABILITY: capability,
      CONCURRENCY: '3',
      HEARTBEAT_MS: '200',
    }),
  );
  f.agents = await Promise.all(
    procs.map(async (proc) => ({
      proc,
      id: (await proc.waitFor('the agent to be ready', (r) => r.event === 'ready', 30_000)).agent as string,
    })),
  );

  const submit = async (until_file: string, i: number) =>
    (
      await f.client.submit({
        capability,
        submitted_by: 'outage-test',
        submitted_payload: { i, until_file },
        max_duration: leaseSeconds,
        max_retries: 3,
      })
    ).id;
  for (let i = 0; i < 4; i++) f.short.push(await submit(f.midFile, i));
  for (let i = 4; i < 8; i++) f.long.push(await submit(f.endFile, i));

  // 9 slots for 8 jobs: every job is claimed, each agent holds at least two.
  const claimed = await until(
    'all eight jobs to be claimed at epoch 1',
    async () => {
      const rows = await jobRows(f);
      return rows.length === 8 && rows.every((r) => r.owner && r.status === 'working') ? rows : undefined;
    },
    30_000,
  );
  for (const row of claimed) {
    expect(row).toMatchObject({ epoch: 1, attempts: 1 });
    f.owner.set(row.id, row.owner as string);
    await agentOf(f, row.owner as string).proc.waitFor(
      `its owner to start ${row.id}`,
      (r) => r.event === 'started' && r.job === row.id,
    );
  }
  expect(new Set(f.owner.values()).size).toBe(3);
  // Working silently, the handlers' leases are kept alive by the SDK.
  const leaseAtClaim = new Map(claimed.map((r) => [r.id, r.leaseMs ?? 0]));
  await until('every lease to be renewed', async () =>
    (await jobRows(f)).every((r) => (r.leaseMs ?? 0) > (leaseAtClaim.get(r.id) ?? 0)),
  );
  return f;
}

/**
 * SIGKILLs every replica, lets the short jobs' handlers finish while nothing
 * can take their results, holds the outage for `ms`, and restarts the replicas
 * with the same ids and ports. Returns when (local clock) the restart began.
 */
async function outage(f: Fleet, ms: number): Promise<{ killedAt: number; restartAt: number }> {
  const killedAt = Date.now();
  await Promise.all(f.replicas.map((r) => r.kill()));
  for (const { proc } of f.agents) {
    await proc.waitFor(
      'the agent to notice the outage',
      (r) => r.event === 'heartbeat-failed' && r.at >= killedAt,
    );
  }
  writeFileSync(f.midFile, '');
  for (const id of f.short) {
    const done = await agentOf(f, f.owner.get(id) as string).proc.waitFor(
      `the handler of ${id} to finish during the outage`,
      (r) => r.event === 'work-done' && r.job === id,
    );
    // Not aborted, and nothing delivered: the registry is down.
    expect(done).toMatchObject({ aborted: false, progressed: false, eventSent: false });
  }
  expect(Date.now() - killedAt).toBeLessThan(ms);
  // The outage itself is a duration, not a condition to wait for; the agents live through it.
  while (Date.now() < killedAt + ms) {
    for (const { id, proc } of f.agents) {
      if (!proc.alive()) throw new Error(`agent ${id} died during the outage:\n${proc.output()}`);
    }
    await sleep(Math.min(1_000, killedAt + ms - Date.now()));
  }
  const restartAt = Date.now();
  f.replicas = await startReplicas(f);
  return { killedAt, restartAt };
}

describe('a whole-registry outage with jobs in flight, with real processes (reference §11 item 4)', () => {
  it('with the outage grace, no job is re-claimed from a live agent: each completes once, by its first owner, at epoch 1', async () => {
    const f = await startFleet('grace', graceDb, `${graceMs}ms`);
    const { killedAt, restartAt } = await outage(f, outageMs);

    // The restarted registry found no live replica and opened the grace (database clock).
    const grace = await until('the post-outage grace to be recorded', async () => {
      const g = await graceWindow(f);
      return g && g.since >= killedAt ? g : undefined;
    });
    expect(grace.until - grace.since).toBeCloseTo(graceMs, -3);
    expect(f.replicas.some((r) => r.logs().includes('outage grace for agents to come back'))).toBe(true);
    const withinGrace = () => Math.max(1, grace.until - Date.now());

    // Within the grace: the outcomes held through the outage are delivered by their owners…
    const shortDone = await until(
      'the jobs finished during the outage to be completed',
      async () => {
        const rows = (await jobRows(f)).filter((r) => f.short.includes(r.id));
        return rows.every((r) => r.status === 'completed') ? rows : undefined;
      },
      withinGrace(),
    );
    for (const row of shortDone) {
      expect(row).toMatchObject({ owner: f.owner.get(row.id), epoch: 1, attempts: 1 });
      expect(row.finishedMs).toBeLessThan(grace.until);
    }
    // …every agent registers again (the same instance: same id, no restart)…
    for (const { id, proc } of f.agents) {
      const again = await proc.waitFor(
        'the agent to register again within the grace',
        (r) => r.event === 'registered' && r.at >= restartAt,
        withinGrace(),
      );
      expect(again.at, `${id} registered again at ${again.at}, grace until ${grace.until}`).toBeLessThan(
        grace.until,
      );
    }
    // …and the running jobs' leases are renewed.
    await until(
      'the running jobs to be renewed after the restart',
      async () =>
        (await jobRows(f)).filter((r) => f.long.includes(r.id)).every((r) => (r.beatMs ?? 0) > grace.since),
      withinGrace(),
    );

    // The grace ends and the sweeps resume: for longer than a lease and an agent timeout, they
    // find nothing to take (leases current, agents healthy), and the jobs stay with their owners.
    await until('the grace to end', async () => (await dbNow(f)) > grace.until, withinGrace() + 5_000);
    await until(
      'the settle window after the grace to pass, nothing taken',
      async () => {
        const rows = (await jobRows(f)).filter((r) => f.long.includes(r.id));
        for (const row of rows) {
          expect(row).toMatchObject({ status: 'working', owner: f.owner.get(row.id), epoch: 1, attempts: 1 });
        }
        const agents = await f.sql<{ agent_id: string; status: string }[]>`
          select agent_id, status from agents where agent_id in ${f.sql(f.agents.map((a) => a.id))}`;
        expect(agents.map((a) => a.status)).toEqual(['healthy', 'healthy', 'healthy']);
        return (await dbNow(f)) > grace.until + settleWindowMs;
      },
      settleWindowMs + 5_000,
    );

    // The long jobs' work ends: everything completes.
    writeFileSync(f.endFile, '');
    const rows = await until('every job to complete', async () => {
      const all = await jobRows(f);
      return all.every((r) => r.status === 'completed') ? all : undefined;
    });

    // Exactly once, by the first owner, never re-claimed.
    expect(rows).toHaveLength(8);
    for (const row of rows) {
      const owner = f.owner.get(row.id);
      expect(row).toMatchObject({
        status: 'completed',
        owner,
        epoch: 1,
        attempts: 1,
        result: { by: owner, epoch: 1 },
      });
      const log = await f.client.readEvents(row.id);
      expect(log.events.filter((e) => e.type === 'attempt').map((e) => e.payload)).toEqual([
        { by: owner, epoch: 1 },
      ]);
    }
    await settledLogged(f, rows);
    const records = allRecords(f);
    for (const id of [...f.short, ...f.long]) {
      const owner = f.owner.get(id);
      // One handler run, one claim, one committed outcome: the owner's, at epoch 1.
      expect(records.filter((r) => r.event === 'started' && r.job === id)).toEqual([
        expect.objectContaining({ by: owner, epoch: 1, attempt: 1 }),
      ]);
      expect(
        records.filter((r) => r.event === 'notice' && r.type === 'claimed' && r.jobId === id),
      ).toHaveLength(1);
      expect(records.filter((r) => r.event === 'notice' && r.type === 'settled' && r.jobId === id)).toEqual([
        expect.objectContaining({ by: owner, outcome: 'completed', committed: true, claimEpoch: 1 }),
      ]);
    }
    // No handler aborted, no write refused, anywhere.
    expect(
      records.filter(
        (r) =>
          r.event === 'abort' ||
          r.event === 'stale-write' ||
          (r.event === 'notice' && (r.type === 'refused' || r.type === 'aborted')),
      ),
    ).toEqual([]);
    for (const { id, proc } of f.agents) expect(proc.alive(), `${id} alive`).toBe(true);
  }, 170_000);

  it('without the grace (MESH_OUTAGE_GRACE=0), the same outage re-claims the jobs of live agents: the MCP Mesh behaviour', async () => {
    const f = await startFleet('nograce', controlDb, '0');
    const { killedAt } = await outage(f, controlOutageMs);
    expect(await graceWindow(f)).toBeUndefined();

    // The restarted registry finds leases expired and agents silent, and takes the jobs back.
    const reclaimed = await until(
      'a job to be re-claimed',
      async () => {
        const rows = (await jobRows(f)).filter((r) => r.epoch >= 2);
        return rows.length > 0 ? rows : undefined;
      },
      30_000,
    );
    // The first owner, alive all along, learns it lost the lease: its handler is aborted.
    const lost = reclaimed[0] as JobRow;
    expect(
      await agentOf(f, f.owner.get(lost.id) as string).proc.waitFor(
        `the first owner of ${lost.id} to be aborted`,
        (r) => r.event === 'abort' && r.job === lost.id && r.epoch === 1 && r.at >= killedAt,
      ),
    ).toMatchObject({ reason: 'claim_superseded' });

    // Fencing still holds: each job ends once. Without the grace the agents are
    // swept again and again while they reconnect (backoff up to 30 s), so a job
    // may also spend its retry budget (max_retries 3) and fail: that is the MCP
    // behaviour too. What must hold: every job ends, a completed one carries the
    // result of whoever holds its last claim, committed exactly once, and a
    // failed one has no committed completion.
    writeFileSync(f.endFile, '');
    const rows = await until(
      'every job to end',
      async () => {
        const all = await jobRows(f);
        return all.every((r) => r.status === 'completed' || r.status === 'failed') ? all : undefined;
      },
      60_000,
    ).catch(async (err: Error) => {
      // Say where each job stands, for whoever reads the failure.
      const now = (await jobRows(f)).map(({ id, status, owner, epoch, attempts }) => ({
        id,
        status,
        owner,
        epoch,
        attempts,
      }));
      throw new Error(`${err.message}: ${JSON.stringify(now)}`);
    });
    await settledLogged(f, rows);
    const records = allRecords(f);
    for (const row of rows) {
      const committed = records.filter(
        (r) => r.event === 'notice' && r.type === 'settled' && r.jobId === row.id && r.committed,
      );
      if (row.status === 'completed') {
        expect(row.result).toEqual({ by: row.owner, epoch: row.epoch });
        expect(committed).toEqual([
          expect.objectContaining({ by: row.owner, outcome: 'completed', claimEpoch: row.epoch }),
        ]);
      } else {
        expect(committed.filter((r) => r.outcome === 'completed')).toEqual([]);
        expect(row.attempts).toBeGreaterThan(1);
      }
    }
    // The jobs taken from live agents: what the grace prevents.
    const retaken = rows.filter((r) => r.epoch > 1);
    expect(retaken.length).toBeGreaterThan(0);
    for (const { id, proc } of f.agents) expect(proc.alive(), `${id} alive`).toBe(true);
  }, 120_000);
});

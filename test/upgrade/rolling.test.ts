import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { migrate, readBundledMigrations } from '@mesh/db';
import {
  freePort,
  type InstalledRelease,
  installedRelease,
  type RegistryProcess,
  repoRoot,
  runRegistry,
  spawnRegistry,
  useTestDatabase,
} from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkJobLog } from '../support/job-log.ts';
import { startRoundRobinProxy } from '../support/round-robin-proxy.ts';
import {
  type AgentProcess,
  breakingMigrationsFixture,
  claimsHandedOut,
  runMeshctl,
  startAgent,
} from './support.ts';

/**
 * The headline upgrade (DESIGN.md §7): a fleet of three replicas of released
 * 0.1.0 and agents on released SDK 0.1.0, under a continuous stream of jobs,
 * upgraded to this release replica by replica (drain one, wait for the claims
 * it handed out, stop it, start the new version on the same ports, resume),
 * then the agents one by one, then one replica rolled back to 0.1.0 and
 * forward again. Dispatch is never paused fleet-wide. Checked afterwards on
 * the log of every operation: every job completed exactly once, no stale write
 * accepted, no claim handed out by a draining replica, no fleet-wide claim gap
 * longer than one lease, the 0.1.0 replicas serving on the migrated schema.
 */
const lease = '6s';
const leaseMs = 6_000;
const current = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version as string;

interface Slot {
  id: string;
  port: number;
  adminPort: number;
  proc: RegistryProcess;
  version: string;
}

describe(`rolling upgrade 0.1.0 → ${current}`, () => {
  const db = useTestDatabase({ migrated: false });
  let old: InstalledRelease;
  let next: InstalledRelease;
  beforeAll(async () => {
    [old, next] = await Promise.all([installedRelease('0.1.0'), installedRelease('current')]);
  }, 600_000);

  const slots: Slot[] = [];
  const agents: AgentProcess[] = [];
  const closers: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const a of agents) a.kill();
    await Promise.all(slots.map((s) => s.proc.stop()));
    for (const close of closers) await close();
  });

  const startReplica = (rel: InstalledRelease, id: string, port: number, adminPort: number) =>
    spawnRegistry({
      bin: rel.registryBin,
      databaseUrl: db.url,
      replicaId: id,
      port,
      adminPort,
      // The fleet's first start is an "outage" (no replica was live): its grace
      // would keep the paused agent's jobs from the lease sweep past the test.
      args: [
        '--default-lease',
        lease,
        '--replica-heartbeat',
        '300ms',
        '--sweep-interval',
        '1s',
        '--outage-grace',
        '2s',
      ],
    });

  it('replaces every replica and agent under load, rolls one replica back and forward, and loses or doubles nothing', async () => {
    const started = Date.now();
    // ── A 0.1.0 fleet and 0.1.0 agents ───────────────────────────────────────
    for (const id of ['r1', 'r2', 'r3']) {
      const [port, adminPort] = [await freePort(), await freePort()];
      slots.push({
        id,
        port,
        adminPort,
        proc: await startReplica(old, id, port, adminPort),
        version: '0.1.0',
      });
    }
    const urls = slots.map((s) => `http://127.0.0.1:${s.port}`);
    // SDK 0.1.0 agents sit behind a load balancer, as they must: given the
    // replicas' URLs themselves they stay on the last one that answered, and
    // once every other replica was replaced that is the one drained last, so
    // they would all idle on it (docs/upgrading.md, "Agents").
    const balancer = await startRoundRobinProxy(urls);
    closers.push(balancer.close);
    for (let i = 0; i < 3; i++)
      agents.push(await startAgent(old.sdkEntry, [balancer.url], `agent-${i}`, '0.1.0'));
    // SDK 0.2.0 agents get the replicas' URLs, each in another order: they
    // leave a replica that has no work for them or drains.
    const rotated = (i: number) => [...urls.slice(i), ...urls.slice(0, i)];
    const allAgents = [...agents];

    const conn = (s: Slot) => [
      '--registry-url',
      `http://127.0.0.1:${s.port}`,
      '--admin-url',
      `http://127.0.0.1:${s.adminPort}`,
    ];
    // The released 0.1.0 meshctl administers the 0.1.0 fleet.
    const oldStatus = await runMeshctl(old.meshctlBin, [
      'registry',
      'status',
      ...conn(slots[0] as Slot),
      '--json',
    ]);
    expect(oldStatus.code, oldStatus.stderr).toBe(0);
    expect(JSON.parse(oldStatus.stdout)).toMatchObject({ version: '0.1.0', replica_id: 'r1' });

    // ── The job stream ───────────────────────────────────────────────────────
    // Each submission n carries an Idempotency-Key and is retried with it on the
    // next replica until one answers 201, as the SDK does. An attempt that got no
    // answer or a 5xx (a replica being replaced, the database bound's 503, the
    // client's timeout) may still have committed: its n is "in doubt". A 0.2.0
    // replica answers a retry with the job the first attempt created; 0.1.0
    // ignores the key, so only an in-doubt n may end with two jobs.
    const submitted = new Map<number, string>();
    const inDoubt = new Set<number>();
    let submitErrors = 0;
    let streaming = true;
    let streamAt = { n: 0, url: '', since: 0 };
    const stream = (async () => {
      for (let n = 0; streaming; n++) {
        for (let attempt = 0; attempt < 3 * urls.length && !submitted.has(n); attempt++) {
          const url = urls[(n + attempt) % urls.length] as string;
          streamAt = { n, url, since: Date.now() };
          const res = await fetch(`${url}/jobs`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': `"rolling-${n}"` },
            signal: AbortSignal.timeout(10_000),
            // One job in ten runs for 1.5 s: agents hold claims across every step.
            // The chaos suite's retry budget: a claim whose answer is lost (a
            // replica replaced mid-claim, a client timeout on a loaded machine,
            // 0.1.0 replicas that never give such claims back) costs an attempt
            // until its lease expires; two of them failed a job of the default
            // budget (one retry) in a full-suite run. Exactly once, no stale
            // write and the budget are still checked.
            body: JSON.stringify({
              capability: 'upgrade-work',
              submitted_by: 'stream',
              max_retries: 10,
              submitted_payload: n % 10 === 0 ? { n, hold_ms: 1_500 } : { n },
            }),
          }).catch(() => undefined);
          if (res?.status === 201) {
            submitted.set(n, ((await res.json()) as { id: string }).id);
            break;
          }
          // A refusal before the request was read (no answer on a closed port,
          // 429) cannot have committed; anything else might have.
          if (res === undefined || res.status >= 500) inDoubt.add(n);
          submitErrors += 1;
          if (attempt >= urls.length - 1) await new Promise((r) => setTimeout(r, 200));
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const waitForCompletions = async (more: number, during: string) => {
      const target = completions() + more;
      const deadline = Date.now() + 60_000;
      while (completions() < target) {
        if (Date.now() > deadline) {
          const tails = allAgents.map(
            (a) => `${a.name} (${a.sdk}):\n${a.output().split('\n').slice(-8).join('\n')}`,
          );
          const logs = slots.map(
            (s) => `${s.id} (${s.version}):\n${s.proc.logs().split('\n').slice(-8).join('\n')}`,
          );
          const streamState = `stream: ${submitted.size} submitted, ${inDoubt.size} in doubt, ${submitErrors} retried, at ${JSON.stringify(streamAt)}`;
          throw new Error(
            `fewer than ${more} completions in 60 s ${during}\n${streamState}\n${tails.join('\n')}\n${logs.join('\n')}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const completions = () =>
      allAgents.reduce(
        (n, a) =>
          n +
          a.records.filter((r) => r.type === 'settled' && r.outcome === 'completed' && r.committed).length,
        0,
      );
    await waitForCompletions(50, 'before the upgrade');

    // ── Before: the procedure this upgrade needs ────────────────────────────
    const meshctl = (args: string[]) => runMeshctl(next.meshctlBin, args);
    const check = await meshctl([
      'upgrade',
      'check',
      '--to',
      current,
      ...conn(slots[0] as Slot),
      '--database-url',
      db.url,
      '--snapshot',
      '--json',
    ]);
    expect(check.code, `${check.stdout}${check.stderr}`).toBe(0);
    expect(JSON.parse(check.stdout)).toMatchObject({ go: true, procedure: 'rolling' });

    // ── One replica at a time ────────────────────────────────────────────────
    const drainChecks: { replica: string; atDrain: number; atStop: number }[] = [];
    const oldServedAfterMigration: { replica: string; before: number; after: number }[] = [];
    const replace = async (slot: Slot, rel: InstalledRelease, version: string) => {
      const drain = await meshctl([
        'registry',
        'drain',
        '--wait',
        '--own-claims',
        '--poll-interval',
        '1',
        ...conn(slot),
      ]);
      expect(drain.code, `${drain.stdout}${drain.stderr}`).toBe(0);
      const atDrain = await claimsHandedOut(`http://127.0.0.1:${slot.port}`);
      // Let the fleet dispatch meanwhile: the stream goes on, the other replicas claim.
      await waitForCompletions(20, `while ${slot.id} drains`);
      const atStop = await claimsHandedOut(`http://127.0.0.1:${slot.port}`);
      drainChecks.push({ replica: `${slot.id}@${slot.version}`, atDrain, atStop });
      expect((await slot.proc.stop()).code).toBe(0);
      slot.proc = await startReplica(rel, slot.id, slot.port, slot.adminPort);
      slot.version = version;
      const resume = await meshctl(['registry', 'resume', ...conn(slot)]);
      expect(resume.code, `${resume.stdout}${resume.stderr}`).toBe(0);
      await waitForCompletions(20, `after ${slot.id} came back on ${version}`);
    };

    for (const [i, slot] of slots.entries()) {
      await replace(slot, next, current);
      if (i === 0) {
        // The new replica applied this release's migrations; the 0.1.0 ones keep serving on them.
        for (const other of slots.slice(1)) {
          const before = await claimsHandedOut(`http://127.0.0.1:${other.port}`);
          oldServedAfterMigration.push({ replica: other.id, before, after: -1 });
        }
        await waitForCompletions(60, 'with 0.1.0 replicas on the migrated schema');
        for (const o of oldServedAfterMigration) {
          const other = slots.find((s) => s.id === o.replica) as Slot;
          o.after = await claimsHandedOut(`http://127.0.0.1:${other.port}`);
          expect((await fetch(`http://127.0.0.1:${other.port}/ready`)).status).toBe(200);
        }
        // A 0.1.0 agent paused past its lease in the mixed fleet: its jobs go
        // back to the queue and are claimed by others; when it wakes, its
        // stale writes must be refused, whichever version answers.
        const sleeper = agents[2] as AgentProcess;
        const holding = () => {
          const open = new Set<string>();
          for (const r of sleeper.records) {
            if (r.type === 'claimed') open.add(String(r.jobId));
            if (r.type === 'settled') open.delete(String(r.jobId));
          }
          return open.size;
        };
        for (const deadline = Date.now() + 30_000; holding() === 0 && Date.now() < deadline; ) {
          await new Promise((r) => setTimeout(r, 10));
        }
        expect(holding(), 'the paused agent holds claims').toBeGreaterThan(0);
        sleeper.pause();
        // Past the lease, a renewal made just before the pause, and a sweep.
        await new Promise((r) => setTimeout(r, 2 * leaseMs + 2_000));
        sleeper.resume();
      }
    }

    // ── Then the agents, one at a time ───────────────────────────────────────
    for (let i = 0; i < 3; i++) {
      const a = agents[i] as AgentProcess;
      expect(await a.stop()).toBe(0);
      const fresh = await startAgent(next.sdkEntry, rotated(i), `agent-${i}`, current);
      agents[i] = fresh;
      allAgents.push(fresh);
      await waitForCompletions(20, `after agent-${i} moved to SDK ${current}`);
    }

    // ── One replica back to 0.1.0 (on the migrated schema), and forward again ─
    const rollback = slots[1] as Slot;
    await replace(rollback, old, '0.1.0');
    const back = (await (await fetch(`http://127.0.0.1:${rollback.port}/health`)).json()) as {
      version: string;
    };
    expect(back.version).toBe('0.1.0');
    await replace(rollback, next, current);

    // ── After ────────────────────────────────────────────────────────────────
    // ── After ────────────────────────────────────────────────────────────────
    const verify = await meshctl([
      'upgrade',
      'verify',
      '--to',
      current,
      ...conn(slots[0] as Slot),
      '--database-url',
      db.url,
      '--json',
    ]);
    expect(verify.code, `${verify.stdout}${verify.stderr}`).toBe(0);

    streaming = false;
    await stream;
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      // Every submitted job ends completed (the agents drain the queue).
      const deadline = Date.now() + 90_000;
      let open = Number.POSITIVE_INFINITY;
      while (open > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        [{ open }] =
          (await sql`select count(*)::int as open from jobs where status <> 'completed'`) as unknown as [
            { open: number },
          ];
      }
      const jobs = await sql<{ id: string; status: string; claim_epoch: string; n: number }[]>`
        select id, status, claim_epoch, (submitted_payload->>'n')::int as n from jobs`;
      expect(jobs.filter((j) => j.status !== 'completed')).toEqual([]);
      // Nothing lost: every answered submission is a job.
      const ids = new Set(jobs.map((j) => j.id));
      expect([...submitted.values()].filter((id) => !ids.has(id))).toEqual([]);
      // Nothing invented or doubled: every job is an answered or in-doubt
      // submission, and a second job for one submission only where an attempt
      // went unanswered (and its retry reached a replica that ignores the key).
      const byN = new Map<number, string[]>();
      for (const j of jobs) byN.set(j.n, [...(byN.get(j.n) ?? []), j.id]);
      expect([...byN.keys()].filter((n) => !submitted.has(n) && !inDoubt.has(n))).toEqual([]);
      const doubled = [...byN].filter(([, js]) => js.length > 1);
      expect(doubled.filter(([n]) => !inDoubt.has(n))).toEqual([]);

      // Exactly once: one committed completion per job, with the job's final epoch
      // (the checker the chaos suite shares, test/support/job-log.ts).
      const records = allAgents.flatMap((a) => a.records);
      const log = checkJobLog(records, jobs);
      expect(log.twice).toEqual([]);
      // A job with no committed completion, with what its agents logged of it (diagnosis).
      expect(
        log.neverCommitted.map((id) => ({ id, records: records.filter((r) => String(r.jobId) === id) })),
      ).toEqual([]);
      expect(log.committed.size).toBe(jobs.length);
      expect(log.staleAccepted).toEqual([]);
      const rejectedStale = log.rejectedStale;

      // No claim handed out by a draining replica.
      for (const d of drainChecks) expect(d.atStop, d.replica).toBe(d.atDrain);
      // The 0.1.0 replicas handed out claims on the migrated schema.
      for (const o of oldServedAfterMigration) expect(o.after, o.replica).toBeGreaterThan(o.before);

      // Claims never stopped fleet-wide for a lease while jobs were queued.
      const claims = records
        .filter((r) => r.type === 'claimed')
        .map((r) => r.at)
        .sort((a, b) => a - b);
      let longestGap = 0;
      for (let i = 1; i < claims.length; i++)
        longestGap = Math.max(longestGap, (claims[i] as number) - (claims[i - 1] as number));
      expect(longestGap).toBeLessThan(leaseMs);

      const figures = {
        jobs: jobs.length,
        submissions_answered: submitted.size,
        submissions_in_doubt: inDoubt.size,
        in_doubt_committed: [...inDoubt].filter((n) => byN.has(n) && !submitted.has(n)).length,
        doubled_by_0_1_0: doubled.length,
        submission_attempts_retried: submitErrors,
        claims: claims.length,
        longest_claim_gap_ms: longestGap,
        rejected_stale_writes: rejectedStale,
        drains: drainChecks.length,
        duration_s: Math.round((Date.now() - started) / 1000),
        sdk_versions_seen: [...new Set(records.map((r) => r.sdk))],
      };
      console.log(`[upgrade] rolling 0.1.0 → ${current}: ${JSON.stringify(figures)}`);
    } finally {
      await sql.end();
    }
  }, 600_000);
});

describe('a breaking migration (a test fixture, never shipped)', () => {
  const db = useTestDatabase({ migrated: false });

  it('turns a running 0.1.0 replica not ready, and a 0.1.0 or current binary refuses to start (exit 3)', async () => {
    const old = await installedRelease('0.1.0');
    const running = await spawnRegistry({
      bin: old.registryBin,
      databaseUrl: db.url,
      replicaId: 'old-running',
      args: ['--replica-heartbeat', '300ms'],
    });
    const fixture = breakingMigrationsFixture('9.0.0');
    const applied = await migrate(db.url, {
      migrations: readBundledMigrations(fixture.dir),
      release: '9.0.0',
    });
    expect(applied.applied).toContain(fixture.name);

    let ready = await fetch(`${running.url}/ready`);
    const deadline = Date.now() + 20_000;
    while (ready.status === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await fetch(`${running.url}/ready`);
    }
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({
      checks: { schema: 'incompatible', reason: expect.stringContaining(`migration ${fixture.name}`) },
    });
    expect((await running.stop()).code).toBe(0);

    for (const bin of [old.registryBin, undefined]) {
      const run = await runRegistry({ bin, databaseUrl: db.url, replicaId: 'refused', timeoutMs: 30_000 });
      expect(run.code, run.output).toBe(3);
      expect(run.output).toContain(`migration ${fixture.name} is breaking for it`);
      expect(run.output).toContain('run release 9.0.0 or newer');
    }
  }, 300_000);
});

import { errorBodySchema } from '@mesh/protocol';
import { freePort, type RegistryProcess, spawnRegistry, startTcpProxy, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { checkJobLog } from '../support/job-log.ts';
import { until } from '../support/until.ts';
import { type AgentProcess, startAgent, workspaceSdk } from '../upgrade/support.ts';
import { type JobRow, startJobStream } from './stream.ts';

/**
 * Issue 16 item 2: a database that misbehaves rather than goes down. Two
 * registry processes reach PostgreSQL through a proxy this test slows down,
 * partitions (blackhole), heals and resets mid-query, under a job stream
 * worked by three SDK agent processes. Checked: every request ends within the
 * bound with a 503 and the wire body; /ready 503 and /health 200 meanwhile;
 * recovery without a restart, with the outage grace; every job completed
 * exactly once, no stale write accepted; admin routes answer on a slow database.
 */
const db = useTestDatabase();
const boundMs = 2_000;
const capability = 'db-faults';
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** One request, timed; the client itself gives up after 30 s (a hang is a failure). */
async function timed(url: string, method = 'GET', body?: unknown) {
  const started = performance.now();
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return {
    what: `${method} ${new URL(url).pathname}`,
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    text,
    ms: Math.round(performance.now() - started),
  };
}

describe('a database that misbehaves (proxy between the registry and PostgreSQL)', () => {
  it('bounded 503s while partitioned, recovery without restart, exactly-once jobs through cuts and a slow database', async () => {
    const proxy = await startTcpProxy(Number(new URL(db.url).port));
    cleanups.push(() => proxy.close());
    const replicas: RegistryProcess[] = [];
    for (const id of ['dbf-a', 'dbf-b']) {
      const r = await spawnRegistry({
        databaseUrl: proxy.via(db.url),
        replicaId: id,
        adminPort: await freePort(),
        args: [
          '--db-request-timeout',
          `${boundMs}ms`,
          '--default-lease',
          '4s',
          '--replica-heartbeat',
          '300ms',
          '--sweep-interval',
          '500ms',
          '--outage-grace',
          '10s',
        ],
      });
      replicas.push(r);
      cleanups.push(async () => {
        const exit = await r.stop();
        // A replica that died meanwhile (or failed to stop cleanly) says why.
        if (exit.code !== 0)
          console.log(`[db-faults] ${r.replicaId} exit ${JSON.stringify(exit)}:\n${r.logs().slice(-4000)}`);
      });
    }
    const [a, b] = replicas as [RegistryProcess, RegistryProcess];
    const urls = replicas.map((r) => r.url);
    const agents: AgentProcess[] = [];
    for (let i = 0; i < 3; i++) {
      const agent = await startAgent(workspaceSdk, urls, `dbf-agent-${i}`, 'workspace', {
        nodeArgs: ['--import', 'tsx'],
        env: { CAPABILITY: capability },
      });
      agents.push(agent);
      cleanups.push(() => agent.kill());
    }
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    cleanups.push(() => sql.end());
    const completed = async () =>
      Number(
        (
          await sql<{ n: number }[]>`
            select count(*)::int as n from jobs where capability = ${capability} and status = 'completed'`
        )[0]?.n,
      );
    // The retry budget of the chaos suite (harness.ts): a claim whose answer a
    // cut or a reset lost costs an attempt (until issue 29 gives it back), and
    // on a loaded machine a job met several faults and ran out of the default
    // three retries. Exactly once, within the budget, is still checked.
    const stream = startJobStream({ urls, capability, ratePerSecond: 20, maxRetries: 10 });
    await until('jobs flowing', async () => (await completed()) >= 20, 30_000);

    // ── Partition: the database blackholed ─────────────────────────────────
    const [known] = [...stream.submitted];
    const bootIds = await Promise.all(
      replicas.map(
        async (r) => ((await (await fetch(`${r.url}/health`)).json()) as { boot_id: string }).boot_id,
      ),
    );
    proxy.cut('blackhole');
    const cutAt = Date.now();
    const probe = (r: RegistryProcess) =>
      Promise.all([
        timed(`${r.url}/jobs`, 'POST', {
          capability: 'db-faults-probe',
          submitted_by: 'probe',
          submitted_payload: {},
        }),
        timed(`${r.url}/jobs/${known}`),
        timed(`${r.url}/jobs/claim`, 'POST', { capability: 'db-faults-probe', instance_id: 'probe' }),
        timed(`${r.url}/jobs/batch`, 'POST', {
          instance_id: 'probe',
          deltas: [{ id: known, claim_epoch: 1, progress: 0.5 }],
        }),
        timed(`${r.url}/agents`),
      ]);
    const firstProbes = (await Promise.all(replicas.map(probe))).flat();
    // Again, once the hung handlers hold their slots: still bounded.
    await new Promise((r) => setTimeout(r, 2_500));
    const secondProbes = (await Promise.all(replicas.map(probe))).flat();
    const health = await timed(`${a.url}/health`);
    const ready = await timed(`${a.url}/ready`);
    const adminStatus = await timed(`${b.adminUrl}/admin/drain`);
    // Past the 4 s lease: only the outage grace keeps the sweeps off the agents' jobs.
    await new Promise((r) => setTimeout(r, Math.max(0, cutAt + 6_000 - Date.now())));
    proxy.restore();
    const healedAt = Date.now();

    for (const p of [...firstProbes, ...secondProbes]) {
      expect(p.status, `${p.what}: ${p.text}`).toBe(503);
      expect(errorBodySchema.safeParse(JSON.parse(p.text)).success, p.text).toBe(true);
      expect(Number(p.retryAfter), `${p.what} Retry-After`).toBeGreaterThan(0);
      // The bound, with slack for a loaded machine; never the minutes of a hang.
      expect(p.ms, p.what).toBeLessThan(boundMs + 4_000);
    }
    expect(health.status).toBe(200);
    expect(ready.status).toBe(503);
    expect(adminStatus.status).toBe(200);

    // ── Healed: back by itself, same processes, outage grace applied ──────
    await until(
      'both replicas ready again',
      async () =>
        (await Promise.all(replicas.map((r) => timed(`${r.url}/ready`)))).every((x) => x.status === 200),
      30_000,
    );
    const recoveredMs = Date.now() - healedAt;
    const bootIdsAfter = await Promise.all(
      replicas.map(
        async (r) => ((await (await fetch(`${r.url}/health`)).json()) as { boot_id: string }).boot_id,
      ),
    );
    expect(bootIdsAfter).toEqual(bootIds);
    await until(
      'the outage grace after the database outage',
      () =>
        replicas.some((r) =>
          r
            .logRecords()
            .some((rec) => String(rec.msg).startsWith('database reachable again and no other replica')),
        ),
      10_000,
    ).catch((err) => {
      for (const r of replicas)
        console.log(
          r
            .logRecords()
            .map((x) => `${x.time} ${x.msg} ${x.code ?? ''}`)
            .join('\n'),
        );
      throw err;
    });

    // ── Connections reset mid-query, three times while jobs flow ──────────
    let dropped = 0;
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 700));
      dropped += proxy.drop();
    }

    // ── A slow database: 200 ms per round trip ────────────────────────────
    const beforeSlow = await completed();
    let t0 = Date.now();
    await new Promise((r) => setTimeout(r, 4_000));
    const normalRate = ((await completed()) - beforeSlow) / ((Date.now() - t0) / 1000);
    proxy.latency(200);
    const slowStart = await completed();
    t0 = Date.now();
    const admin = [
      await timed(`${b.adminUrl}/admin/drain`),
      await timed(`${b.adminUrl}/admin/drain`, 'POST'),
      await timed(`${b.adminUrl}/admin/drain`, 'DELETE'),
      await timed(`${a.url}/health`),
      await timed(`${a.url}/metrics`),
    ];
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + 6_000 - Date.now())));
    const slowRate = ((await completed()) - slowStart) / ((Date.now() - t0) / 1000);
    proxy.latency(0);
    for (const x of admin) expect(x.status, `${x.what}: ${x.text}`).toBe(200);

    // ── Afterwards: every job completed exactly once ──────────────────────
    await stream.stop().catch(async (err) => {
      for (const r of replicas) {
        const m = await (await fetch(`${r.url}/metrics`)).text();
        console.log(
          r.replicaId,
          m
            .split('\n')
            .filter((l) => /in_flight|shed|timeouts|database_up/.test(l))
            .join('\n'),
        );
        console.log(r.logs().slice(-3000));
      }
      throw err;
    });
    const total = stream.submitted.size;
    await until('every job completed', async () => (await completed()) >= total, 90_000).catch(() => false);
    const jobs = await sql<JobRow[]>`
      select id, status, claim_epoch, attempt_count, max_retries from jobs
      where capability = ${capability} and submitted_by = 'chaos-stream'`;
    // An agent whose completion committed but whose answer was lost retries it
    // (with backoff) and logs the outcome only then: wait for the log to settle.
    const settledLog = () =>
      checkJobLog(
        agents.flatMap((x) => x.records),
        jobs,
      );
    await until('every agent settled its jobs', () => settledLog().neverCommitted.length === 0, 30_000).catch(
      () => undefined,
    );
    const log = settledLog();
    expect(new Set(jobs.map((j) => j.id))).toEqual(stream.submitted);
    if (log.violations.length > 0) {
      const bad = new Set([...log.neverCommitted, ...log.twice.map(([id]) => id)]);
      console.log(
        agents
          .flatMap((x) => x.records.map((r) => ({ agent: x.name, ...r })))
          .filter((r) => bad.has(String((r as { jobId?: unknown }).jobId)))
          .map((r) => JSON.stringify(r))
          .join('\n'),
      );
    }
    expect(log.violations).toEqual([]);
    console.log(
      `[db-faults] ${JSON.stringify({
        jobs: jobs.length,
        claims: log.claims,
        rejected_stale_writes: log.rejectedStale,
        failed_submission_tries: stream.failedTries(),
        partition_probe_ms: [...firstProbes, ...secondProbes].map((p) => `${p.what}=${p.status}/${p.ms}`),
        ready_during_partition: `${ready.status}/${ready.ms}ms`,
        health_during_partition: `${health.status}/${health.ms}ms`,
        admin_drain_status_during_partition: `${adminStatus.status}/${adminStatus.ms}ms`,
        recovered_after_heal_ms: recoveredMs,
        connections_reset: dropped,
        completions_per_s: { normal: +normalRate.toFixed(1), slow_200ms: +slowRate.toFixed(1) },
        admin_on_slow_db_ms: admin.map((x) => `${x.what}=${x.status}/${x.ms}`),
      })}`,
    );
  }, 240_000);
});

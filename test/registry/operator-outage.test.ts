import { type CutMode, spawnRegistry, startTcpProxy, useTestDatabase } from '@mesh/testkit';
import { afterAll, describe, expect, it } from 'vitest';

const db = useTestDatabase();
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

async function until(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One request, timed; the client gives up after 5 s (the registry must answer well before). */
async function timed(url: string, method = 'GET') {
  const started = performance.now();
  const res = await fetch(url, { method, signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  return { status: res.status, text, ms: Math.round(performance.now() - started) };
}

const metricValue = (text: string, name: string) =>
  Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);

/**
 * Issue 20: nothing an operator uses waits on the database. The registry
 * reaches PostgreSQL through a proxy this test cuts, as a partition
 * (connections hang) and as a database that went away (connections refused).
 */
describe('operator routes during a database outage (real process, real PostgreSQL)', () => {
  it('health, metrics, drain status, drain and resume answer at once and say what is stale', async () => {
    const proxy = await startTcpProxy(Number(new URL(db.url).port));
    cleanups.push(() => proxy.close());
    const r = await spawnRegistry({
      databaseUrl: proxy.via(db.url),
      replicaId: 'op-outage',
      env: { MESH_REPLICA_HEARTBEAT: '200ms', MESH_SWEEP_INTERVAL: '200ms' },
    });
    const post = (path: string, body: unknown) =>
      fetch(`${r.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    await post('/jobs', { capability: 'outage-op', submitted_by: 's', submitted_payload: {} });
    await post('/jobs', { capability: 'outage-op', submitted_by: 's', submitted_payload: {} });
    expect((await post('/jobs/claim', { capability: 'outage-op', instance_id: 'w' })).status).toBe(200);
    // The background read has seen the claim and the queued job.
    await until(async () => {
      const m = (await timed(`${r.url}/metrics`)).text;
      return (
        /mesh_live_claims\{scope="replica"\} 1/.test(m) &&
        /mesh_queue_depth\{capability="outage-op"\} 1/.test(m)
      );
    });

    const report: string[] = [];
    for (const mode of ['blackhole', 'refuse'] as CutMode[]) {
      proxy.cut(mode);
      await new Promise((res) => setTimeout(res, 300));
      const health = await timed(`${r.url}/health`);
      const status = await timed(`${r.url}/admin/drain`);
      const drain = await timed(`${r.url}/admin/drain`, 'POST');
      const drained = await timed(`${r.url}/admin/drain`);
      const resume = await timed(`${r.url}/admin/drain`, 'DELETE');
      // By now the background read has failed at least once.
      await until(
        async () => metricValue((await timed(`${r.url}/metrics`)).text, 'mesh_database_up') === 0,
        5_000,
      );
      const metrics = await timed(`${r.url}/metrics`);
      const answers = { health, metrics, status, drain, drained, resume };
      report.push(
        `${mode}: ${Object.entries(answers)
          .map(([k, a]) => `${k} ${a.status} in ${a.ms} ms`)
          .join(', ')}`,
      );
      for (const a of Object.values(answers)) expect(a.status).toBe(200);
      const s = JSON.parse(status.text);
      expect(s).toMatchObject({ draining: false, live_claims: 1, live_claims_this_replica: 1, stale: true });
      expect(typeof s.live_claims_age_seconds).toBe('number');
      expect(JSON.parse(drain.text)).toMatchObject({ draining: true, stale: true, claims_in_flight: 0 });
      expect(JSON.parse(drained.text)).toMatchObject({ draining: true, stale: true });
      expect(JSON.parse(resume.text)).toMatchObject({
        draining: false,
        stale: true,
        fleet_draining: false,
        fleet_draining_stale: true,
      });
      expect(metricValue(metrics.text, 'mesh_database_up')).toBe(0);
      expect(metricValue(metrics.text, 'mesh_status_age_seconds')).toBeGreaterThan(0);
      // The last values read stay exported, with their age.
      expect(metrics.text).toMatch(/mesh_live_claims\{scope="fleet"\} 1/);
      expect(metrics.text).toMatch(/mesh_queue_depth\{capability="outage-op"\} 1/);

      proxy.restore();
      await until(async () => {
        const m = await timed(`${r.url}/metrics`);
        const d = JSON.parse((await timed(`${r.url}/admin/drain`)).text);
        return metricValue(m.text, 'mesh_database_up') === 1 && d.stale === undefined && d.live_claims === 1;
      });
    }
    console.log(`answer times during the outage:\n  ${report.join('\n  ')}`);

    // One warn when the database went away and one info when it came back, per
    // outage; counts in between, no stack per request or per background tick.
    const records = r.logRecords();
    const down = records.filter((x) => String(x.msg).startsWith('database unreachable'));
    const back = records.filter((x) => x.msg === 'database reachable again');
    expect(down.map((x) => `${x.time} ${x.source} ${x.code} ${x.reason}`)).toHaveLength(2);
    expect(back).toHaveLength(2);
    expect(back[1]).toMatchObject({ level: 30 });
    expect(typeof back[1]?.down_ms).toBe('number');
    expect(r.logs()).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    expect(records.filter((x) => x.level === 40).length).toBe(2);
    // Every admin action is in the audit trail: who, what, result; during the outage too.
    const audit = records.filter((x) => x.audit === true);
    expect(audit.map((x) => `${x.method} ${x.path} ${x.status} ${x.result}`)).toEqual([
      'POST /admin/drain 200 ok',
      'DELETE /admin/drain 200 ok',
      'POST /admin/drain 200 ok',
      'DELETE /admin/drain 200 ok',
    ]);
    expect(audit.every((x) => x.remote === '127.0.0.1' || x.remote === '::ffff:127.0.0.1')).toBe(true);
  }, 120_000);
});

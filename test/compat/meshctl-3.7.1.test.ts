import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import { reportSvc, timeSvc } from '../support/sample-agents.ts';

/** The real meshctl 3.7.1, from the optional dev dependency @mcpmesh/cli-linux-x64. */
const meshctl = fileURLToPath(
  new URL('../../node_modules/@mcpmesh/cli-linux-x64/bin/meshctl', import.meta.url),
);
const db = useTestDatabase();

beforeAll(() => {
  if (!existsSync(meshctl)) {
    throw new Error(
      `the real meshctl 3.7.1 is missing at ${meshctl}: it comes with the optional dev dependency ` +
        '@mcpmesh/cli-linux-x64@3.7.1 (linux-x64 only); run pnpm install on linux-x64',
    );
  }
});

// meshctl always prints ANSI colours.
const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const plain = (s: string) => s.replace(ansi, '');
async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(meshctl, args, {
      timeout: 60_000,
      env: { ...process.env, HOME: '/tmp' },
    });
    return { code: 0, out: plain(stdout), err: plain(stderr) };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof err.code === 'number' ? err.code : -1,
      out: plain(err.stdout ?? ''),
      err: plain(err.stderr ?? ''),
    };
  }
}
const post = (base: string, path: string, body?: unknown) =>
  fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then((r) => r.json() as Promise<{ id: string; claimed: { id: string }[] }>);

async function jobFor(r: RegistryProcess, capability: string) {
  const { id } = await post(r.url, '/jobs', { capability, submitted_by: 'compat', submitted_payload: {} });
  const { claimed } = await post(r.url, '/jobs/claim', { capability, instance_id: 'worker-1' });
  expect(claimed[0]?.id).toBe(id);
  return id as string;
}

describe('the real meshctl 3.7.1 administers our registry', () => {
  it('registry status / drain --wait / resume and job status / reclaim, admin routes on the main port', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'compat-1' });
    const url = ['--registry-url', r.url];

    const status = await run(['registry', 'status', ...url]);
    expect(status).toMatchObject({ code: 0 });
    expect(status.out).toContain('Registry:    active (normal dispatch)');
    expect(status.out).toContain('Live claims: 0');
    const json = await run(['registry', 'status', '--json', ...url]);
    expect(JSON.parse(json.out)).toMatchObject({ draining: false, live_claims: 0, replica_id: 'compat-1' });

    const id = await jobFor(r, 'compat');
    const jobStatus = await run(['job', 'status', id, ...url]);
    expect(jobStatus.code).toBe(0);
    expect(jobStatus.out).toMatch(new RegExp(`Job:\\s+${id}`));
    expect(jobStatus.out).toMatch(/Capability:\s+compat/);
    expect(jobStatus.out).toMatch(/Owner:\s+worker-1/);
    expect(jobStatus.out).toMatch(/Claim epoch:\s+1/);
    expect(jobStatus.out).toMatch(/Attempts:\s+1 \/ 1 \(max_retries\)/);
    expect(jobStatus.out).toMatch(/Submitted:\s+\d{4}-\d{2}-\d{2}T.*by compat/);
    const jobJson = await run(['job', 'status', id, '--json', ...url]);
    expect(JSON.parse(jobJson.out)).toMatchObject({ id, claim_epoch: 1, owner_instance_id: 'worker-1' });

    const drain = await run(['registry', 'drain', ...url]);
    expect(drain.code).toBe(0);
    expect(drain.out).toContain('Registry draining — new job claims paused');
    expect(drain.out).toContain('Live claims: 1');

    // drain --wait returns once the live claim completes.
    const waiting = run([
      'registry',
      'drain',
      '--wait',
      '--poll-interval',
      '1',
      '--wait-timeout',
      '30',
      ...url,
    ]);
    await new Promise((res) => setTimeout(res, 1_500));
    await post(r.url, '/jobs/batch', {
      instance_id: 'worker-1',
      deltas: [{ id, claim_epoch: 1, status: 'completed', result: {} }],
    });
    const waited = await waiting;
    expect(waited.code).toBe(0);
    expect(waited.out).toContain('All jobs drained — safe to upgrade/restart');

    const resume = await run(['registry', 'resume', ...url]);
    expect(resume.code).toBe(0);
    expect(resume.out).toContain('Registry resumed — job dispatch active');

    const other = await jobFor(r, 'compat');
    const reclaim = await run(['job', 'reclaim', other, ...url]);
    expect(reclaim.code).toBe(0);
    expect(reclaim.out).toContain(`Job ${other} reclaimed`);
    expect(reclaim.out).toMatch(/Evicted owner:\s+worker-1/);
    expect(reclaim.out).toMatch(/Claim epoch:\s+1 \(unchanged/);
    const missing = await run(['job', 'status', '00000000-0000-0000-0000-000000000000', ...url]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('job not found: 00000000-0000-0000-0000-000000000000');
  }, 120_000);

  it('with a separate admin port: the main port answers 404 with meshctl hint, the admin port works', async () => {
    const adminPort = await freePort();
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'compat-2', adminPort });
    expect(r.adminUrl).toBe(`http://127.0.0.1:${adminPort}`);
    const onMain = await run(['registry', 'status', '--registry-url', r.url]);
    expect(onMain.code).toBe(1);
    expect(onMain.err).toContain('registry returned status 404: 404 page not found');
    expect(onMain.err).toContain('hint: if the registry runs a separate admin port');
    const admin = ['--registry-url', r.adminUrl as string];
    expect((await run(['registry', 'status', ...admin])).out).toContain(
      'Registry:    active (normal dispatch)',
    );
    expect((await run(['registry', 'drain', '--wait', ...admin])).out).toContain('All jobs drained');
    expect((await run(['registry', 'resume', ...admin])).code).toBe(0);
    const id = await jobFor(r, 'compat-admin');
    // Force reclaim is an operator action: on the admin port only.
    const reclaim = await run(['job', 'reclaim', id, ...admin]);
    expect(reclaim.code).toBe(0);
    expect(reclaim.out).toContain(`Job ${id} reclaimed`);
    // job status stays on the main port.
    expect((await run(['job', 'status', id, '--registry-url', r.url])).out).toMatch(/Owner:\s+\(unclaimed\)/);
  }, 120_000);
});

describe('the real meshctl 3.7.1 lists and shows our agents', () => {
  it('list and status render our /agents (healthy, dependencies resolved)', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'compat-agents' });
    const heartbeat = (body: Record<string, unknown>) =>
      post(r.url, '/heartbeat', { version: '1.0.0', runtime: 'typescript', ...body });
    await heartbeat(timeSvc);
    await heartbeat(reportSvc);
    const url = ['--registry-url', r.url];
    const list = await run(['list', ...url]);
    expect(list.code).toBe(0);
    expect(list.err).not.toContain('failed to decode');
    expect(list.out).toMatch(/Registry: running \(http:\/\/127\.0\.0\.1:\d+\) - 2 healthy/);
    expect(list.out).toMatch(
      /report-svc-5e6f7a8b\s+TypeScript\s+Agent\s+healthy\s+1\/2\s+1\/1\s+127\.0\.0\.1:9102/,
    );
    expect(list.out).toMatch(
      /time-svc-1a2b3c4d\s+TypeScript\s+Agent\s+healthy\s+0\/0\s+1\/1\s+127\.0\.0\.1:9101/,
    );
    expect(list.out).toContain('2 agents (2 healthy)');

    const status = await run(['status', 'report-svc', ...url]);
    expect(status.code).toBe(0);
    expect(status.out).toContain('Agent Details: report-svc-5e6f7a8b');
    expect(status.out).toMatch(/Dependencies\s+:\s+1\/2/);
    expect(status.out).toMatch(/time_service\s+get_time\s+http:\/\/127\.0\.0\.1:9101/);
    expect(status.out).toMatch(/weather_service\s+NOT FOUND/);
    const json = await run(['status', '--json', ...url]);
    expect((JSON.parse(json.out) as { id: string }[]).map((a) => a.id).sort()).toEqual([
      'report-svc-5e6f7a8b',
      'time-svc-1a2b3c4d',
    ]);
  }, 60_000);
});

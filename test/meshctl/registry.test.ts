import { execFile } from 'node:child_process';
import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { meshctl, meshctlBin } from './support.ts';

const db = useTestDatabase();

// Waits, not speed bounds: on a loaded 2-core machine a meshctl process takes
// seconds to load and a replica's answers come late (speed is measured by the
// benchmarks). What each test asserts is the outcome.
async function until(check: () => Promise<boolean> | boolean, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((res) => setTimeout(res, 50));
  }
}

const started: RegistryProcess[] = [];
const replica = async (id: string, port?: number): Promise<RegistryProcess> => {
  const r = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: id,
    port,
    env: { MESH_REPLICA_HEARTBEAT: '200ms' },
  });
  started.push(r);
  return r;
};
/** Stops a replica and starts it again: same id and port, a new boot. */
const restart = async (r: RegistryProcess): Promise<RegistryProcess> => {
  await r.stop();
  started.splice(started.indexOf(r), 1);
  return replica(r.replicaId, r.port);
};
afterEach(async () => {
  await Promise.all(started.splice(0).map((r) => r.stop()));
});

const submit = (r: RegistryProcess, capability: string, n = 1) =>
  Promise.all(
    Array.from({ length: n }, (_, i) =>
      call(r.url, 'POST', '/jobs', { capability, submitted_by: 'test', submitted_payload: { i } }).then(
        (x) => x.body.id as string,
      ),
    ),
  );
const claimOne = async (r: RegistryProcess, capability: string, instance = 'worker-1') =>
  (await call(r.url, 'POST', '/jobs/claim', { capability, instance_id: instance })).body.claimed[0] as
    | { id: string; claim_epoch: number }
    | undefined;
const complete = (r: RegistryProcess, job: { id: string; claim_epoch: number }, instance = 'worker-1') =>
  call(r.url, 'POST', '/jobs/batch', {
    instance_id: instance,
    deltas: [{ id: job.id, claim_epoch: job.claim_epoch, status: 'completed', result: { ok: true } }],
  });

describe('meshctl registry: one replica', () => {
  it('status / drain / resume print meshctl 3.7.1 lines (plus ours) and --json the raw body', async () => {
    const r = await replica('solo');
    const url = ['--registry-url', r.url];

    const status = await meshctl(['registry', 'status', ...url]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('Registry:    active (normal dispatch)');
    expect(status.stdout).toContain('Live claims: 0');
    expect(status.stdout).toMatch(/Replica:\s+solo \(version /);
    const json = await meshctl(['registry', 'status', '--json', ...url]);
    expect(JSON.parse(json.stdout)).toMatchObject({ draining: false, live_claims: 0, replica_id: 'solo' });

    await submit(r, 'solo');
    const held = await claimOne(r, 'solo');
    expect(held).toBeDefined();
    const drain = await meshctl(['registry', 'drain', ...url]);
    expect(drain.code).toBe(0);
    expect(drain.stdout).toContain('Registry draining — new job claims paused');
    expect(drain.stdout).toContain('  Live claims: 1');
    expect(drain.stdout).toContain('Note: 1 job(s) still running');
    expect((await meshctl(['registry', 'status', ...url])).stdout).toContain(
      'Registry:    DRAINING (new claims paused)',
    );

    // --wait --wait-timeout: exit 1, still draining, and the command to resume.
    const timedOut = await meshctl([
      'registry',
      'drain',
      '--wait',
      '--wait-timeout',
      '1',
      '--poll-interval',
      '1',
      ...url,
    ]);
    expect(timedOut.code).toBe(1);
    expect(timedOut.stderr).toContain(
      'timed out after 1s with 1 live claim(s) still running; the registry is still draining',
    );
    expect(timedOut.stderr).toContain(`To resume dispatch: meshctl registry resume --registry-url ${r.url}`);

    // On a terminal (util-linux `script` gives it one) the progress line is
    // rewritten in place and shows the elapsed time.
    const onTty = await new Promise<string>((resolve, reject) => {
      const cmd = [
        process.execPath,
        meshctlBin,
        'registry',
        'drain',
        '--wait',
        '--wait-timeout',
        '2',
        '--poll-interval',
        '1',
        ...url,
      ]
        .map((a) => `'${a}'`)
        .join(' ');
      execFile(
        'script',
        ['-qec', cmd, '/dev/null'],
        { env: { ...process.env, NO_COLOR: '1' } },
        (err, stdout) => (err && typeof err.code !== 'number' ? reject(err) : resolve(stdout)),
      );
    });
    expect(onTty).toContain(`\r${String.fromCharCode(27)}[2K  Live claims: 1 · `);
    expect(onTty).toMatch(/Live claims: 1 · \d+s elapsed/);
    expect(onTty).toContain('timed out after 2s');

    // --wait returns 0 once the claim completes.
    const waiting = meshctl(['registry', 'drain', '--wait', '--poll-interval', '1', ...url]);
    await until(() => waiting.stdoutSoFar().includes('Live claims: 1'));
    await complete(r, held as { id: string; claim_epoch: number });
    const waited = await waiting;
    expect(waited.code).toBe(0);
    expect(waited.stdout).toContain('All jobs drained — safe to upgrade/restart');

    const resume = await meshctl(['registry', 'resume', ...url]);
    expect(resume.code).toBe(0);
    expect(resume.stdout).toContain('Registry resumed — job dispatch active');
    expect((await meshctl(['registry', 'status', '--json', ...url])).stdout).toContain('"draining":false');
  }, 240_000);

  it('--wait aborts (exit 1) when the registry is resumed or restarted mid-wait', async () => {
    let r = await replica('bouncer');
    await submit(r, 'bounce', 2);
    const held = (await claimOne(r, 'bounce')) as { id: string; claim_epoch: number };
    const url = () => ['--registry-url', r.url];

    const resumed = meshctl(['registry', 'drain', '--wait', '--poll-interval', '1', ...url()]);
    await until(() => resumed.stdoutSoFar().includes('Live claims: 1'));
    await call(r.url, 'DELETE', '/admin/drain');
    const aborted = await resumed;
    expect(aborted.code).toBe(1);
    expect(aborted.stderr).toContain(
      'registry is no longer draining (concurrent resume or restart?) — aborting wait',
    );

    // A restart on the same port: new boot id, drain cleared.
    const restarted = meshctl(['registry', 'drain', '--wait', '--poll-interval', '1', ...url()]);
    await until(() => restarted.stdoutSoFar().includes('Live claims: 1'));
    r = await restart(r);
    const out = await restarted;
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/registry (restarted mid-wait|is no longer draining|disappeared mid-wait)/);
    expect(out.stderr).toContain('the drain is NOT known to be complete');
    // Leave no live claim behind for the fleet tests (live_claims is database-wide).
    expect((await complete(r, held)).body).toMatchObject({ accepted: 1 });
  }, 240_000);

  it('usage and connection errors exit 2', async () => {
    const bad = await meshctl([
      'registry',
      'drain',
      '--wait-timeout=-3',
      '--registry-url',
      'http://127.0.0.1:9',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--wait-timeout must be >= 0');
    const nourl = await meshctl(['registry', 'status', '--registry-url', 'not a url']);
    expect(nourl.code).toBe(2);
    expect(nourl.stderr).toContain('--registry-url is not a URL');
    const down = await meshctl(['registry', 'status', '--registry-url', 'http://127.0.0.1:9']);
    expect(down.code).toBe(2);
    expect(down.stderr).toContain('cannot reach the registry at http://127.0.0.1:9');
    const typo = await meshctl(['registry', 'drian']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/Unknown argument|Did you mean/);
  }, 300_000);
});

describe('meshctl registry: a fleet of three replicas', () => {
  it('drain --all --wait under load returns only when no claim is live anywhere; resume --all', async () => {
    const [r1, r2, r3] = await Promise.all([replica('fa'), replica('fb'), replica('fc')]);
    const all = [r1, r2, r3];
    await submit(r1, 'load', 60);

    // Load: four workers claim through every replica in turn and hold each job
    // for a while before completing it, until told to stop.
    let stop = false;
    const claimedAt: number[] = [];
    const workers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const r = all[(w + i) % 3] as RegistryProcess;
        const job = await claimOne(r, 'load', `w${w}`).catch(() => undefined);
        if (!job) {
          await new Promise((res) => setTimeout(res, 100));
          continue;
        }
        claimedAt.push(Date.now());
        await new Promise((res) => setTimeout(res, 300 + Math.random() * 700));
        await complete(r, job, `w${w}`);
      }
    });
    await until(() => claimedAt.length >= 6);

    const drain = await meshctl([
      'registry',
      'drain',
      '--all',
      '--wait',
      '--poll-interval',
      '1',
      '--registry-url',
      r2.url,
    ]);
    const returnedAt = Date.now();
    expect(drain.code, drain.stderr).toBe(0);
    expect(drain.stdout).toMatch(/fa\s+draining/);
    expect(drain.stdout).toMatch(/fb\s+draining/);
    expect(drain.stdout).toMatch(/fc\s+draining/);
    expect(drain.stdout).toContain('All jobs drained fleet-wide — safe to upgrade/restart');
    // Safe means: every replica drains and nothing is live, as seen right after.
    for (const r of all) {
      const s = (await call(r.url, 'GET', '/admin/drain')).body;
      expect(s).toMatchObject({ draining: true, live_claims: 0 });
    }
    // …and no claim succeeded after meshctl said so (the workers still try).
    await new Promise((res) => setTimeout(res, 500));
    expect(claimedAt.filter((t) => t > returnedAt)).toEqual([]);
    const queued = (await call(r1.url, 'GET', '/jobs?status=working&limit=200')).body.jobs.filter(
      (j: { owner_instance_id: string | null }) => j.owner_instance_id === null,
    );
    expect(queued.length).toBeGreaterThan(0); // work was left waiting, not lost

    const status = await meshctl(['registry', 'status', '--all', '--registry-url', r1.url]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/fb\s+live\s+DRAINING/);
    expect(status.stdout).toContain('3 live replica(s), 3 draining');

    const resume = await meshctl(['registry', 'resume', '--all', '--json', '--registry-url', r3.url]);
    expect(resume.code).toBe(0);
    expect(JSON.parse(resume.stdout).replicas).toEqual(
      expect.arrayContaining(
        ['fa', 'fb', 'fc'].map((id) => ({ replica_id: id, draining: false, error: null })),
      ),
    );
    await until(() => claimedAt.some((t) => t > returnedAt));
    stop = true;
    await Promise.all(workers);
  }, 300_000);

  it('drain --all --wait aborts when a replica restarts mid-wait; --persist survives one', async () => {
    const [r1, r2] = await Promise.all([replica('ga'), replica('gb')]);
    let r3 = await replica('gc');
    await submit(r1, 'held', 3);
    const held = await claimOne(r1, 'held');
    expect(held).toBeDefined();

    const waiting = meshctl([
      'registry',
      'drain',
      '--all',
      '--wait',
      '--poll-interval',
      '1',
      '--registry-url',
      r1.url,
    ]);
    await until(() => waiting.stdoutSoFar().includes('Live claims: 1'));
    r3 = await restart(r3);
    const aborted = await waiting;
    expect(aborted.code).toBe(1);
    expect(aborted.stderr).toMatch(
      /replica gc (restarted mid-wait|is no longer draining|disappeared mid-wait)/,
    );
    expect(aborted.stderr).toContain('meshctl registry resume --all');

    // With --persist the drain lives in the database: a replica restarted
    // meanwhile comes back draining, and the wait goes on to completion.
    const persisted = meshctl([
      'registry',
      'drain',
      '--persist',
      '--wait',
      '--poll-interval',
      '1',
      '--registry-url',
      r2.url,
    ]);
    await until(() => persisted.stdoutSoFar().includes('Live claims: 1'));
    r3 = await restart(r3);
    expect((await call(r3.url, 'GET', '/admin/drain')).body).toMatchObject({ draining: true });
    await new Promise((res) => setTimeout(res, 2_500)); // a couple of polls see the new boot
    await complete(r1, held as { id: string; claim_epoch: number });
    const done = await persisted;
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toContain('Fleet draining (persisted in the database)');
    expect(done.stdout).toContain('All jobs drained fleet-wide');
    expect(done.stderr).toMatch(
      /replica gc (restarted mid-wait; it came back draining|is unreachable|left mid-wait)/,
    );
    expect((await call(r3.url, 'GET', '/admin/fleet/drain')).body).toMatchObject({ fleet_draining: true });
    expect(await claimOne(r3, 'held')).toBeUndefined();
    expect((await meshctl(['registry', 'resume', '--all', '--registry-url', r2.url])).code).toBe(0);
    expect(await claimOne(r3, 'held')).toBeDefined();
  }, 300_000);

  it('replicas lists live, stale and stopped replicas; forget removes a gone one', async () => {
    const [h1, h2] = await Promise.all([replica('ha'), replica('hb')]);
    const url = ['--registry-url', h1.url];
    const listed = await meshctl(['registry', 'replicas', ...url]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^REPLICA\s+STATE\s+DRAINING\s+VERSION/m);
    expect(listed.stdout).toMatch(/ha\s+live\s+no/);
    await h2.kill();
    started.splice(started.indexOf(h2), 1);
    await until(async () => {
      const out = await meshctl(['registry', 'replicas', '--json', ...url]);
      return JSON.parse(out.stdout).replicas.some(
        (r: { replica_id: string; stale: boolean }) => r.replica_id === 'hb' && r.stale,
      );
    });
    const stale = await meshctl(['registry', 'replicas', ...url]);
    expect(stale.stdout).toMatch(/hb\s+stale/);
    expect(stale.stdout).toContain('meshctl registry forget <replica>');
    const refused = await meshctl(['registry', 'forget', 'ha', ...url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('replica ha is live');
    const forgot = await meshctl(['registry', 'forget', 'hb', ...url]);
    expect(forgot).toMatchObject({ code: 0, stdout: 'Replica hb forgotten\n' });
    expect((await meshctl(['registry', 'forget', 'hb', ...url])).stderr).toContain('replica not found: hb');
  }, 240_000);
});

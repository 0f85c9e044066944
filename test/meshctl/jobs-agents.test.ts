import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reportSvc, timeSvc } from '../support/sample-agents.ts';
import { meshctl } from './support.ts';

const db = useTestDatabase();
let r: RegistryProcess;
let url: string[];

beforeAll(async () => {
  r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'jobs-cli' });
  url = ['--registry-url', r.url];
}, 120_000);
afterAll(async () => {
  await r?.stop();
});

const post = async (path: string, body?: unknown) => {
  const res = await fetch(`${r.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: wire bodies
  return (await res.json()) as any;
};

describe('meshctl job', () => {
  it('submit sends an Idempotency-Key: a random one printed with --json, or --idempotency-key, which resubmits nothing new', async () => {
    const once = await meshctl(['job', 'submit', 'cli-idem', '--json', ...url]);
    expect(once.code, once.stderr).toBe(0);
    const random = JSON.parse(once.stdout) as { id: string; idempotency_key: string };
    expect(random.idempotency_key).toMatch(/^[0-9a-f-]{36}$/);

    const args = [
      'job',
      'submit',
      'cli-idem',
      '--payload',
      '{"month":"2026-10"}',
      '--idempotency-key',
      'report-2026-10',
    ];
    const first = await meshctl([...args, '--json', ...url]);
    const again = await meshctl([...args, '--json', ...url]);
    expect(again.code, again.stderr).toBe(0);
    const [a, b] = [JSON.parse(first.stdout), JSON.parse(again.stdout)];
    expect(b).toEqual(a);
    expect(a).toMatchObject({ idempotency_key: 'report-2026-10', status: 'working' });
    expect(a.id).not.toBe(random.id);

    const other = await meshctl(['job', 'submit', 'cli-idem', '--idempotency-key', 'report-2026-10', ...url]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('already used for a different job');
    const bad = await meshctl(['job', 'submit', 'cli-idem', '--idempotency-key', 'a"b', ...url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--idempotency-key');
  });

  it('submit → list → status → events → wait, as tables and as JSON', async () => {
    const submitted = await meshctl([
      'job',
      'submit',
      'cli-echo',
      '--payload',
      '{"text":"hi"}',
      '--max-retries',
      '2',
      '--json',
      ...url,
    ]);
    expect(submitted.code, submitted.stderr).toBe(0);
    const { id } = JSON.parse(submitted.stdout) as { id: string };

    const list = await meshctl(['job', 'list', '--capability', 'cli-echo', ...url]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+CAPABILITY\s+STATUS\s+OWNER\s+EPOCH\s+ATTEMPTS\s+PROGRESS\s+AGE/m);
    // ATTEMPTS: made / allowed (max_retries 2 = 3 attempts).
    expect(list.stdout).toMatch(new RegExp(`${id}\\s+cli-echo\\s+working\\s+-\\s+0\\s+0/3`));
    expect(list.stdout).toContain('1 job(s)');

    // An agent claims it, reports progress and posts an event.
    const [claimed] = (await post('/jobs/claim', { capability: 'cli-echo', instance_id: 'echo-1' })).claimed;
    expect(claimed.id).toBe(id);
    await post('/jobs/batch', {
      instance_id: 'echo-1',
      deltas: [{ id, claim_epoch: 1, progress: 0.5, progress_message: 'halfway' }],
    });
    await post(`/jobs/${id}/events`, { type: 'note', payload: { step: 1 } });

    const status = await meshctl(['job', 'status', id, ...url]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^Job:\\s+${id}$`, 'm'));
    expect(status.stdout).toMatch(/^Owner:\s+echo-1$/m);
    expect(status.stdout).toMatch(/^Claim epoch:\s+1$/m);
    expect(status.stdout).toMatch(/^Attempts:\s+1 of 3 allowed \(max_retries 2\)$/m);
    // A prefix of the id works wherever the id does, as agent prefixes do.
    const byPrefix = await meshctl(['job', 'status', id.slice(0, 8), ...url]);
    expect(byPrefix.code, byPrefix.stderr).toBe(0);
    expect(byPrefix.stdout).toMatch(new RegExp(`^Job:\\s+${id}$`, 'm'));
    const nothing = await meshctl(['job', 'status', 'ffffffff-ff', ...url]);
    expect(nothing.code).toBe(1);
    expect(nothing.stderr).toContain('job not found: ffffffff-ff');
    // input: refused while the job is not waiting for input, then answered once it is.
    const early = await meshctl(['job', 'input', id.slice(0, 8), '{"ok":true}', ...url]);
    expect(early.code).toBe(1);
    expect(early.stderr).toContain('not waiting for input');
    await post('/jobs/batch', {
      instance_id: 'echo-1',
      deltas: [{ id, claim_epoch: 1, status: 'input_required', progress_message: 'Go?' }],
    });
    const answered = await meshctl(['job', 'input', id.slice(0, 8), '{"ok":true}', ...url]);
    expect(answered.code, answered.stderr).toBe(0);
    expect(answered.stdout).toContain(`Input sent to job ${id}`);
    expect(answered.stdout).toMatch(/Question:\s+Go\?/);
    await post('/jobs/batch', { instance_id: 'echo-1', deltas: [{ id, claim_epoch: 1, status: 'working' }] });
    expect(status.stdout).toMatch(/^Progress:\s+halfway$/m);
    expect(status.stdout).toMatch(/^Progress %:\s+50%$/m);
    expect(JSON.parse((await meshctl(['job', 'status', id, '--json', ...url])).stdout)).toMatchObject({
      id,
      owner_instance_id: 'echo-1',
      progress: 0.5,
    });

    const events = await meshctl(['job', 'events', id, ...url]);
    expect(events.code).toBe(0);
    expect(events.stdout).toMatch(/^SEQ\s+TIME\s+TYPE\s+BY\s+PAYLOAD/m);
    expect(events.stdout).toMatch(/note\s+\S+\s+\{"step":1\}/);

    // wait follows the job to its end and prints the result.
    const waiting = meshctl(['job', 'wait', id, '--poll-interval', '0.2', ...url]);
    await new Promise((res) => setTimeout(res, 500));
    await post('/jobs/batch', {
      instance_id: 'echo-1',
      deltas: [{ id, claim_epoch: 1, status: 'completed', result: { echoed: 'hi' } }],
    });
    const waited = await waiting;
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stdout).toContain(`Job ${id} completed`);
    expect(waited.stdout).toContain('"echoed": "hi"');
    expect((await meshctl(['job', 'list', '--status', 'completed', '--json', ...url])).stdout).toContain(id);
  }, 180_000);

  it('cancel, reclaim and their refusals; a failed job makes wait exit 1', async () => {
    const a = await post('/jobs', {
      capability: 'cli-x',
      submitted_by: 't',
      submitted_payload: {},
      max_retries: 1,
    });
    const b = await post('/jobs', {
      capability: 'cli-x',
      submitted_by: 't',
      submitted_payload: {},
      max_retries: 3,
    });
    await post('/jobs/claim', { capability: 'cli-x', instance_id: 'x-1' });
    await post('/jobs/claim', { capability: 'cli-x', instance_id: 'x-1' });

    const cancel = await meshctl(['job', 'cancel', a.id, '--reason', 'not needed', ...url]);
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(cancel.stdout).toContain(`Job ${a.id} cancelled`);
    const again = await meshctl(['job', 'cancel', a.id, ...url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already ended — nothing to cancel');
    const waitCancelled = await meshctl(['job', 'wait', a.id, ...url]);
    expect(waitCancelled.code).toBe(1);
    expect(waitCancelled.stderr).toContain(`job ${a.id} cancelled`);
    const cancelledEvents = await meshctl(['job', 'events', a.id, '--type', 'cancelled', '--json', ...url]);
    expect(JSON.parse(cancelledEvents.stdout).events).toEqual([
      expect.objectContaining({ type: 'cancelled' }),
    ]);

    const reclaim = await meshctl(['job', 'reclaim', b.id, ...url]);
    expect(reclaim.code, reclaim.stderr).toBe(0);
    expect(reclaim.stdout).toContain(`Job ${b.id} reclaimed`);
    expect(reclaim.stdout).toMatch(/Evicted owner:\s+x-1/);
    expect(reclaim.stdout).toMatch(/Status:\s+working \(claimable\)/);
    const terminal = await meshctl(['job', 'reclaim', a.id, ...url]);
    expect(terminal.code).toBe(1);
    expect(terminal.stderr).toContain(`job ${a.id} is already in a terminal state — nothing to reclaim`);

    // The last attempt: a reclaim retires the job instead of re-queueing it.
    const c = await post('/jobs', {
      capability: 'cli-y',
      submitted_by: 't',
      submitted_payload: {},
      max_retries: 0,
    });
    await post('/jobs/claim', { capability: 'cli-y', instance_id: 'y-1' });
    const retired = await meshctl(['job', 'reclaim', c.id, ...url]);
    expect(retired.stdout).toMatch(/Status:\s+failed \(retry budget spent/);
    const waitFailed = await meshctl(['job', 'wait', c.id, '--json', ...url]);
    expect(waitFailed.code).toBe(1);
    expect(JSON.parse(waitFailed.stdout)).toMatchObject({ id: c.id, status: 'failed' });

    const missing = '00000000-0000-0000-0000-000000000000';
    for (const cmd of ['status', 'cancel', 'reclaim', 'events', 'wait']) {
      const out = await meshctl(['job', cmd, missing, ...url]);
      expect(out.code, cmd).toBe(1);
      expect(out.stderr, cmd).toContain(`job not found: ${missing}`);
    }
  }, 180_000);

  it('refuses bad input before calling the registry (exit 2)', async () => {
    const notJson = await meshctl(['job', 'submit', 'x', '--payload', '{oops', ...url]);
    expect(notJson.code).toBe(2);
    expect(notJson.stderr).toContain('--payload is not JSON');
    const array = await meshctl(['job', 'submit', 'x', '--payload', '[1]', ...url]);
    expect(array.code).toBe(2);
    expect(array.stderr).toContain('must be a JSON object');
    const badStatus = await meshctl(['job', 'list', '--status', 'running', ...url]);
    expect(badStatus.code).toBe(2);
    expect(badStatus.stderr).toContain('unknown status running');
    const noId = await meshctl(['job', 'status', ...url]);
    expect(noId.code).toBe(2);
  }, 180_000);
});

describe('meshctl list / status (agents)', () => {
  it('renders agents like meshctl 3.7.1: healthy rows, dependencies, details, JSON', async () => {
    const heartbeat = (body: Record<string, unknown>) =>
      post('/heartbeat', { version: '1.0.0', runtime: 'typescript', ...body });
    await heartbeat(timeSvc);
    await heartbeat(reportSvc);
    const list = await meshctl(['list', ...url]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/Registry: running \(http:\/\/127\.0\.0\.1:\d+\) - 2 healthy/);
    expect(list.stdout).toMatch(
      /^NAME\s+RUNTIME\s+TYPE\s+STATUS\s+DEPS\s+CAPS\s+ENDPOINT\s+AGE\s+LAST SEEN$/m,
    );
    expect(list.stdout).toMatch(
      /report-svc-5e6f7a8b\s+TypeScript\s+Agent\s+healthy\s+1\/2\s+1\/1\s+127\.0\.0\.1:9102/,
    );
    expect(list.stdout).toMatch(
      /time-svc-1a2b3c4d\s+TypeScript\s+Agent\s+healthy\s+0\/0\s+1\/1\s+127\.0\.0\.1:9101/,
    );
    expect(list.stdout).toContain('2 agents (2 healthy)');
    const wide = await meshctl(['list', '--wide', '--filter', 'time', ...url]);
    expect(wide.stdout).toMatch(/time-svc-1a2b3c4d.*time_service$/m);
    expect(wide.stdout).not.toContain('report-svc-5e6f7a8b');

    const status = await meshctl(['status', 'report', ...url]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('Agent Details: report-svc-5e6f7a8b');
    expect(status.stdout).toMatch(/Dependencies\s+:\s+1\/2/);
    expect(status.stdout).toMatch(/time_service\s+get_time\s+http:\/\/127\.0\.0\.1:9101/);
    expect(status.stdout).toMatch(/weather_service\s+NOT FOUND/);
    const all = await meshctl(['status', '--json', ...url]);
    expect((JSON.parse(all.stdout) as { id: string }[]).map((a) => a.id).sort()).toEqual([
      'report-svc-5e6f7a8b',
      'time-svc-1a2b3c4d',
    ]);
    const json = await meshctl(['list', '--json', ...url]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      registry: { status: 'running', agent_count: 2, healthy_count: 2, unhealthy_count: 0 },
    });

    // An unhealthy agent is hidden unless --all.
    await fetch(`${r.url}/agents/time-svc-1a2b3c4d`, { method: 'DELETE' });
    const after = await meshctl(['list', ...url]);
    expect(after.stdout).not.toContain('time-svc-1a2b3c4d');
    // A newer instance of the same name supersedes it: header and row say the same word.
    await heartbeat({ ...timeSvc, agent_id: 'time-svc-9f9f9f9f' });
    const withSuperseded = await meshctl(['list', '--all', ...url]);
    expect(withSuperseded.stdout).toMatch(/- 2 healthy, 1 superseded/);
    expect(withSuperseded.stdout).toMatch(/^time-svc-1a2b3c4d\s+\S+\s+\S+\s+superseded\s/m);
    const ambiguous = await meshctl(['status', 'zzz', ...url]);
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.stderr).toContain('no agent matches "zzz"');
  }, 180_000);

  it('a registry that is down: list says so and exits 2', async () => {
    const down = await meshctl(['list', '--registry-url', 'http://127.0.0.1:9']);
    expect(down.code).toBe(2);
    expect(down.stdout).toContain('Registry: not running');
    expect(down.stdout).toContain('No agents found');
  });
});

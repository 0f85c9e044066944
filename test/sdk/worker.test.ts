import { JobAbortedError, JobWorker, NonRetryableError, RetryableError, waitForJob } from '@mesh/sdk';
import { describe, expect, it } from 'vitest';
import { targets, until, useTarget } from './targets.ts';

/**
 * The same SDK scenarios against our registry and the real MCP Mesh registry
 * 3.7.1 (an older registry: no extensions, the SDK falls back to the 3.7 wire).
 */
describe.each(targets)('SDK against $name', (target) => {
  const registry = useTarget(target);
  let client: typeof registry.client;
  const ready = registry.ready.then(() => {
    client = registry.client;
  });

  it('detects what the registry supports', async () => {
    await ready;
    const info = await client.info();
    expect(info.extended).toBe(target.name === 'ours');
    if (target.name !== 'ours') expect(info.version).toBe('1.0.0');
  });

  it('runs submitted jobs to completion, with progress, results and failures', async () => {
    await ready;
    const progressSeen: number[] = [];
    const worker = new JobWorker({
      client,
      instanceId: `worker-${target.name === 'ours' ? 'a' : 'b'}`,
      capability: 'sdk-echo',
      concurrency: 3,
      handler: async ({ payload, progress }) => {
        await progress(0.5, 'halfway');
        if (payload.fail) throw new Error('handler said no');
        return { echoed: payload.n };
      },
    });
    worker.start();
    try {
      const ids: string[] = [];
      for (let n = 0; n < 5; n++) {
        ids.push(
          (
            await client.submit({
              capability: 'sdk-echo',
              submitted_by: 'sdk-test',
              submitted_payload: { n },
            })
          ).id,
        );
      }
      const failing = (
        await client.submit({
          capability: 'sdk-echo',
          submitted_by: 'sdk-test',
          submitted_payload: { fail: true },
          max_retries: 0,
        })
      ).id;
      const done = await Promise.all(
        ids.map((id) =>
          waitForJob(client, id, {
            timeoutMs: 30_000,
            onProgress: (j) => progressSeen.push(j.progress ?? 0),
          }),
        ),
      );
      expect(done.map((j) => [j.status, j.result])).toEqual(ids.map((_, n) => ['completed', { echoed: n }]));
      expect(done.every((j) => j.claim_epoch === 1)).toBe(true);
      const failed = await waitForJob(client, failing, { timeoutMs: 30_000 });
      expect(failed).toMatchObject({ status: 'failed', error: 'handler said no' });
    } finally {
      await worker.stop();
    }
  });

  it('aborts a handler whose job is cancelled, and commits nothing for it', async () => {
    await ready;
    let aborted: string | undefined;
    let started: () => void = () => {};
    const running = new Promise<void>((r) => {
      started = r;
    });
    const worker = new JobWorker({
      client,
      instanceId: 'cancel-worker',
      capability: 'sdk-cancel',
      renewEveryMs: 200,
      handler: ({ signal }) =>
        new Promise((resolve) => {
          started();
          signal.addEventListener('abort', () => {
            aborted = String(signal.reason);
            resolve({ should: 'not be stored' });
          });
        }),
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'sdk-cancel',
        submitted_by: 't',
        submitted_payload: {},
      });
      await running;
      await client.cancel(id, 'user asked');
      const deadline = Date.now() + 10_000;
      while (!aborted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(aborted).toMatch(/cancelled|already_terminal/);
      const job = await client.getJob(id);
      expect(job).toMatchObject({ status: 'cancelled', result: null });
    } finally {
      await worker.stop();
    }
  });

  it('aborts a superseded execution (force reclaim) and lets the next claim complete the job once', async () => {
    await ready;
    const epochs: (number | null)[] = [];
    let first = true;
    const worker = new JobWorker({
      client,
      instanceId: 'reclaim-worker',
      capability: 'sdk-reclaim',
      renewEveryMs: 200,
      handler: ({ signal, claimEpoch }) =>
        new Promise((resolve) => {
          epochs.push(claimEpoch);
          if (!first) return resolve({ epoch: claimEpoch });
          first = false;
          signal.addEventListener('abort', () => resolve({ epoch: claimEpoch, stale: true }));
        }),
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'sdk-reclaim',
        submitted_by: 't',
        submitted_payload: {},
        max_retries: 2,
      });
      const deadline = Date.now() + 10_000;
      while (epochs.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await client.request('POST', `/jobs/${id}/reclaim`);
      const job = await waitForJob(client, id, { timeoutMs: 30_000 });
      expect(job).toMatchObject({ status: 'completed', result: { epoch: 2 }, claim_epoch: 2 });
      expect(epochs).toEqual([1, 2]);
    } finally {
      await worker.stop();
    }
  });

  it('claiming a job again that it still runs an older attempt of, supersedes that attempt and keeps the new one', async () => {
    await ready;
    const aborted: string[] = [];
    let secondStarted = false;
    let finishSecond: () => void = () => {};
    const worker = new JobWorker({
      client,
      instanceId: 'reclaim-again-worker',
      capability: 'sdk-reclaim-again',
      concurrency: 2, // a free slot: the worker claims the job again while its first attempt still runs
      maxIdleMs: 100,
      handler: ({ signal, claimEpoch }) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            aborted.push(`epoch ${claimEpoch}: ${(signal.reason as JobAbortedError).code}`);
            if (claimEpoch === 1) resolve({ epoch: 1, stale: true });
          });
          if (claimEpoch !== 1) {
            secondStarted = true;
            finishSecond = () => resolve({ epoch: claimEpoch });
          }
        }),
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'sdk-reclaim-again',
        submitted_by: 't',
        submitted_payload: {},
        max_retries: 2,
      });
      await until('the first attempt to run', () => worker.active === 1);
      // No max_duration: leases are renewed every 5 s, so the first attempt learns nothing from a renewal here.
      await client.request('POST', `/jobs/${id}/reclaim`);
      await until('the second attempt to run', () => secondStarted);
      // The older attempt is aborted at once, superseded by the worker's own newer claim…
      await until('the first attempt to be aborted', () => aborted.length > 0);
      expect(aborted).toEqual(['epoch 1: claim_superseded']);
      // …and its end does not drop the new attempt, which is still running (and renewed), not aborted.
      await new Promise((r) => setTimeout(r, 200));
      expect(worker.active).toBe(1);
      finishSecond();
      const job = await waitForJob(client, id, { timeoutMs: 30_000 });
      expect(job).toMatchObject({ status: 'completed', result: { epoch: 2 }, claim_epoch: 2 });
      expect(aborted).toEqual(['epoch 1: claim_superseded']);
    } finally {
      await worker.stop();
    }
  });

  it('gives a job back when the handler asks for a retry, and completes it at the next attempt', async () => {
    await ready;
    const seen: { id: string; attempt: number; epoch: number | null }[] = [];
    const worker = new JobWorker({
      client,
      instanceId: 'retry-worker',
      capability: 'sdk-retry',
      handler: async ({ id, attempt, claimEpoch, payload }) => {
        seen.push({ id, attempt, epoch: claimEpoch });
        if (payload.always || attempt === 1) throw new RetryableError('upstream down');
        return { attempt };
      },
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'sdk-retry',
        submitted_by: 't',
        submitted_payload: {},
        max_retries: 1,
      });
      const job = await waitForJob(client, id, { timeoutMs: 30_000 });
      expect(job).toMatchObject({
        status: 'completed',
        result: { attempt: 2 },
        attempt_count: 2,
        claim_epoch: 2,
      });
      expect(seen.filter((s) => s.id === id).map((s) => [s.attempt, s.epoch])).toEqual([
        [1, 1],
        [2, 2],
      ]);
      // Past max_retries the job fails, with the handler's own message.
      const spent = await client.submit({
        capability: 'sdk-retry',
        submitted_by: 't',
        submitted_payload: { always: true },
        max_retries: 0,
      });
      const failed = await waitForJob(client, spent.id, { timeoutMs: 30_000 });
      expect(failed).toMatchObject({
        status: 'failed',
        error: 'upstream down',
        attempt_count: 1,
      });
    } finally {
      await worker.stop();
    }
  });

  it('retries a thrown error while attempts remain; NonRetryableError and fail() fail at once', async () => {
    await ready;
    const attempts = new Map<string, number[]>();
    const worker = new JobWorker({
      client,
      instanceId: `default-retry-${target.name === 'ours' ? 'a' : 'b'}`,
      capability: 'sdk-default-retry',
      concurrency: 4,
      handler: async ({ id, attempt, payload, fail }) => {
        attempts.set(id, [...(attempts.get(id) ?? []), attempt]);
        if (payload.kind === 'flaky' && attempt === 1) throw new Error('flaky once');
        if (payload.kind === 'always') throw new Error(`always (attempt ${attempt})`);
        if (payload.kind === 'permanent') throw new NonRetryableError('bad payload');
        if (payload.kind === 'fail') {
          await fail(new Error('failed on purpose'));
          return undefined;
        }
        return { attempt };
      },
    });
    worker.start();
    try {
      const submit = async (kind: string, max_retries: number) =>
        (
          await client.submit({
            capability: 'sdk-default-retry',
            submitted_by: 't',
            submitted_payload: { kind },
            max_retries,
          })
        ).id;
      const flaky = await submit('flaky', 1);
      const always = await submit('always', 2);
      const permanent = await submit('permanent', 3);
      const failed = await submit('fail', 3);
      const [f, a, p, x] = await Promise.all(
        [flaky, always, permanent, failed].map((id) => waitForJob(client, id, { timeoutMs: 30_000 })),
      );
      // max_retries 1 = two attempts: a plain Error thrown at the first is retried.
      expect(f).toMatchObject({ status: 'completed', result: { attempt: 2 }, attempt_count: 2 });
      // max_retries 2 = three attempts, then the last error is the job's.
      expect(a).toMatchObject({ status: 'failed', error: 'always (attempt 3)', attempt_count: 3 });
      expect(attempts.get(always)).toEqual([1, 2, 3]);
      expect(p).toMatchObject({ status: 'failed', error: 'bad payload', attempt_count: 1 });
      expect(x).toMatchObject({ status: 'failed', error: 'failed on purpose', attempt_count: 1 });
      expect(attempts.get(permanent)).toEqual([1]);
      expect(attempts.get(failed)).toEqual([1]);
    } finally {
      await worker.stop();
    }
  });

  it('lets a handler send events and ask for input, and resumes it with the answer', async () => {
    await ready;
    const worker = new JobWorker({
      client,
      instanceId: 'input-worker',
      capability: 'sdk-input',
      handler: async (ctx) => {
        await ctx.sendEvent('step', { n: 1 });
        // Nothing of that type yet: the wait times out.
        expect(await ctx.waitForEvent({ types: ['nudge'], timeoutMs: 300 })).toBeUndefined();
        const answer = await ctx.requestInput<{ approved: boolean }>(`Approve $${ctx.payload.amount}?`);
        expect(await ctx.progress(0.9, 'approved')).toBe(true);
        return { approved: answer.approved, amount: ctx.payload.amount };
      },
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'sdk-input',
        submitted_by: 't',
        submitted_payload: { amount: 42 },
      });
      const asking = await waitForJob(client, id, { until: ['input_required'], timeoutMs: 30_000 });
      expect(asking).toMatchObject({ status: 'input_required', progress_message: 'Approve $42?' });
      // Waiting for input is a live claim: nobody else may take the job meanwhile.
      expect(await client.claim('sdk-input', 'someone-else')).toEqual([]);
      await client.sendInput(id, { approved: true });
      const job = await waitForJob(client, id, { timeoutMs: 30_000 });
      expect(job).toMatchObject({
        status: 'completed',
        result: { approved: true, amount: 42 },
        attempt_count: 1,
        claim_epoch: 1,
      });
      const log = await client.readEvents(id);
      expect(log.events.map((e) => [e.seq, e.type, e.payload])).toEqual([
        [1, 'step', { n: 1 }],
        [2, 'user_input', { approved: true }],
      ]);
    } finally {
      await worker.stop();
    }
  });

  it('wakes a handler waiting for input when its job is cancelled, and commits nothing for it', async () => {
    await ready;
    let failure: unknown;
    const worker = new JobWorker({
      client,
      instanceId: 'input-cancel-worker',
      capability: 'sdk-input-cancel',
      handler: async (ctx) => {
        try {
          await ctx.requestInput('Go ahead?');
        } catch (err) {
          failure = err;
          throw err;
        }
        return { should: 'not be stored' };
      },
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'sdk-input-cancel',
        submitted_by: 't',
        submitted_payload: {},
      });
      await waitForJob(client, id, { until: ['input_required'], timeoutMs: 30_000 });
      await client.cancel(id, 'changed my mind');
      await until('the parked handler to wake', () => failure);
      expect(failure).toBeInstanceOf(JobAbortedError);
      expect((failure as JobAbortedError).code).toBe('cancelled');
      expect(await client.getJob(id)).toMatchObject({
        status: 'cancelled',
        result: null,
        error: 'cancelled: changed my mind',
      });
    } finally {
      await worker.stop();
    }
  });

  it('learns total_deadline from the claim where the registry sends it (ours since 0.2.0), else reads the job', async () => {
    await ready;
    const jobReads = async () => {
      if (target.name !== 'ours') return 0;
      const text = await (await fetch(`${registry.url}/metrics`)).text();
      const line = text
        .split('\n')
        .find(
          (l) =>
            l.startsWith('mesh_http_requests_total{') &&
            l.includes('route="/jobs/:id"') &&
            l.includes('method="GET"') &&
            l.includes('status="200"'),
        );
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const seen = new Map<string, unknown>();
    const worker = new JobWorker({
      client,
      instanceId: 'deadline-reader',
      capability: 'sdk-deadline-claim',
      handler: async ({ payload }) => {
        seen.set(String(payload.n), true);
        return { ok: true };
      },
    });
    const before = await jobReads();
    worker.start();
    try {
      const deadline = Math.floor(Date.now() / 1000) + 600;
      for (let n = 0; n < 3; n++) {
        await client.submit({
          capability: 'sdk-deadline-claim',
          submitted_by: 't',
          submitted_payload: { n },
          total_deadline: deadline,
        });
      }
      await until('three jobs handled', () => seen.size === 3, 20_000);
      if (target.name === 'ours') {
        // The claim answer carries it: no GET /jobs/{id} after the claims.
        const raw = await fetch(`${registry.url}/jobs`, {
          method: 'POST',
          body: JSON.stringify({
            capability: 'sdk-deadline-raw',
            submitted_by: 't',
            submitted_payload: {},
            total_deadline: deadline,
          }),
        });
        expect(raw.status).toBe(201);
        const claim = (await (
          await fetch(`${registry.url}/jobs/claim`, {
            method: 'POST',
            body: JSON.stringify({ capability: 'sdk-deadline-raw', instance_id: 'raw' }),
          })
        ).json()) as { claimed: { total_deadline?: number | null }[] };
        expect(claim.claimed[0]?.total_deadline).toBe(deadline);
        expect(await jobReads()).toBe(before);
      }
    } finally {
      await worker.stop();
    }
  });

  it("aborts a handler when its job's total_deadline passes, and commits nothing", async () => {
    await ready;
    let reason: unknown;
    const worker = new JobWorker({
      client,
      instanceId: 'deadline-worker',
      capability: 'sdk-deadline',
      handler: ({ signal }) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            reason = signal.reason;
            resolve({ late: true });
          });
        }),
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'sdk-deadline',
        submitted_by: 't',
        submitted_payload: {},
        max_retries: 0,
        total_deadline: Math.floor(Date.now() / 1000) + 2,
      });
      await until('the handler to be aborted', () => reason, 20_000);
      expect(reason).toBeInstanceOf(JobAbortedError);
      expect((reason as JobAbortedError).code).toBe('deadline_exceeded');
      const job = await client.getJob(id);
      expect(job.status).not.toBe('completed');
      expect(job.result).toBeNull();
    } finally {
      await worker.stop();
    }
  });
});

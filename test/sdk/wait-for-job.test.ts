import type { JobEvent } from '@mesh/protocol';
import { JobWaitTimeoutError, JobWorker, waitForJob } from '@mesh/sdk';
import { describe, expect, it } from 'vitest';
import { targets, useTarget } from './targets.ts';

/**
 * `waitForJob` (issue 19 item 2): waits as long as asked, stops on its
 * signal or its own `timeoutMs` with a typed error, and is woken by the job's
 * events (read with a cursor: each once, in order), against our registry and
 * the real MCP Mesh registry 3.7.1.
 */
describe.each(targets)('waitForJob against $name', (target) => {
  const registry = useTarget(target);

  it('hands out every event once, in order, and every progress step the handler waits on being seen', async () => {
    await registry.ready;
    const client = registry.client;
    const capability = 'wait-steps';
    const worker = new JobWorker({
      client,
      instanceId: `wait-worker-${target.name === 'ours' ? 'a' : 'b'}`,
      capability,
      handler: async ({ progress, sendEvent, waitForEvent }) => {
        for (const step of [1, 2, 3]) {
          await progress(step / 4, `step ${step}`);
          await sendEvent('step', { step });
          await waitForEvent({ types: ['next'] });
        }
        return { steps: 3 };
      },
    });
    worker.start();
    try {
      const { id } = await client.submit({ capability, submitted_by: 't', submitted_payload: {} });
      const progress: (number | null)[] = [];
      const events: JobEvent[] = [];
      // The handler goes on once step n was seen both ways: its event and its progress.
      const seen = { events: 0, progress: 0, answered: 0 };
      const next = () => {
        const step = Math.min(seen.events, seen.progress);
        if (step > seen.answered && step < 4) {
          seen.answered = step;
          void client.postEvent(id, 'next');
        }
      };
      const job = await waitForJob(client, id, {
        // The completion posts no event: it is seen at the next status read.
        pollMs: 2_000,
        onEvent: (e) => {
          events.push(e);
          if (e.type === 'step') seen.events = (e.payload as { step: number }).step;
          next();
        },
        onProgress: (j) => {
          progress.push(j.progress);
          if (j.progress !== null) seen.progress = Math.round(j.progress * 4);
          next();
        },
      });
      expect(job).toMatchObject({ status: 'completed', result: { steps: 3 } });
      expect(progress.filter((p) => p !== null)).toEqual([0.25, 0.5, 0.75, 1]);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      expect(events.map((e) => e.type)).toEqual(['step', 'next', 'step', 'next', 'step', 'next']);
    } finally {
      await worker.stop();
    }
  });

  it('is woken by an event in the middle of a long-poll (a cancel)', async () => {
    await registry.ready;
    const client = registry.client;
    const { id } = await client.submit({
      capability: 'wait-nobody',
      submitted_by: 't',
      submitted_payload: {},
    });
    const events: JobEvent[] = [];
    let cancel: Promise<unknown> | undefined;
    const job = await waitForJob(client, id, {
      // Longer than this test may take: only the `cancelled` event can end the wait in time.
      pollMs: 60_000,
      onEvent: (e) => events.push(e),
      // Cancelled once the wait is under way: its next step is the 60 s long-poll.
      onProgress: () => {
        cancel ??= client.cancel(id, 'no longer needed');
      },
    });
    await cancel;
    expect(job).toMatchObject({ id, status: 'cancelled' });
    expect(events).toMatchObject([{ seq: 1, type: 'cancelled', payload: { reason: 'no longer needed' } }]);
  }, 20_000);

  it('gives up with a JobWaitTimeoutError only after the timeoutMs asked for', async () => {
    await registry.ready;
    const client = registry.client;
    const { id } = await client.submit({
      capability: 'wait-nobody',
      submitted_by: 't',
      submitted_payload: {},
    });
    const started = Date.now();
    const err = await waitForJob(client, id, { timeoutMs: 1_500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobWaitTimeoutError);
    expect(err).toMatchObject({ jobId: id, timeoutMs: 1_500, job: { id, status: 'working' } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_500);
  });

  it('stops waiting when its signal aborts, even in the middle of a long-poll', async () => {
    await registry.ready;
    const client = registry.client;
    const { id } = await client.submit({
      capability: 'wait-nobody',
      submitted_by: 't',
      submitted_payload: {},
    });
    const ctl = new AbortController();
    const wait = waitForJob(client, id, {
      pollMs: 60_000,
      signal: ctl.signal,
      // Aborted once the wait is under way: its next step is the 60 s long-poll.
      onProgress: () => setTimeout(() => ctl.abort(new Error('caller gave up')), 100),
    });
    await expect(wait).rejects.toThrow('caller gave up');
    // The job goes on.
    expect((await client.getJob(id)).status).toBe('working');
  }, 20_000);
});

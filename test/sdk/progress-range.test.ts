import { JobWorker, waitForJob } from '@mesh/sdk';
import { describe, expect, it } from 'vitest';
import { targets, useTarget } from './targets.ts';

/**
 * Issue 35: `progress(50)` and `progress(-1)` returned true and consumers saw
 * 50 and -1. Progress is a fraction from 0 to 1 (the wire's convention, not
 * enforced by the registry): the SDK refuses anything else with a RangeError
 * and sends nothing.
 */
const ours = targets.filter((t) => t.name === 'ours');
describe.each(ours)('progress outside [0, 1] against $name', (target) => {
  const registry = useTarget(target);

  it('rejects 50, -1, NaN and Infinity with a RangeError, sends nothing, and 0.5 still goes through', async () => {
    await registry.ready;
    const client = registry.client;
    const refused: string[] = [];
    const worker = new JobWorker({
      client,
      instanceId: 'progress-range',
      capability: 'progress-range',
      handler: async ({ progress }) => {
        for (const bad of [50, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
          await progress(bad).then(
            () => refused.push(`accepted ${bad}`),
            (err: unknown) => refused.push(`${(err as Error).name}: ${(err as Error).message}`),
          );
        }
        expect(await progress(0.5, 'halfway')).toBe(true);
        return { ok: true };
      },
    });
    worker.start();
    try {
      const { id } = await client.submit({
        capability: 'progress-range',
        submitted_by: 't',
        submitted_payload: {},
      });
      const seen: (number | null)[] = [];
      const job = await waitForJob(client, id, {
        timeoutMs: 60_000,
        onProgress: (j) => seen.push(j.progress),
      });
      expect(job.status).toBe('completed');
      expect(refused).toEqual([
        'RangeError: progress must be a fraction from 0 to 1 (0.5 is halfway), got 50',
        'RangeError: progress must be a fraction from 0 to 1 (0.5 is halfway), got -1',
        'RangeError: progress must be a fraction from 0 to 1 (0.5 is halfway), got NaN',
        'RangeError: progress must be a fraction from 0 to 1 (0.5 is halfway), got Infinity',
      ]);
      for (const p of seen) if (p !== null) expect(p).toBeGreaterThanOrEqual(0);
      for (const p of seen) if (p !== null) expect(p).toBeLessThanOrEqual(1);
    } finally {
      await worker.stop();
    }
  });
});

import type { JobDelta } from '@mesh/protocol';
import { JobWorker, RegistryClient, RegistryUnreachableError, type WorkerNotice } from '@mesh/sdk';
import { installedRelease, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from './targets.ts';

/**
 * A completion whose commit landed but whose answer was lost (a cut
 * connection, a 503 from the request bound after the commit): the worker
 * sends it again, and a registry without replay answers (the 0.1.0 release,
 * MCP Mesh 3.7) says `already_terminal`. The worker reads the job once: ended
 * completed by this instance at this epoch, so the attempt is committed, not
 * refused (the rolling upgrade's job log saw such a job with no committed
 * completion under load).
 */
const db = useTestDatabase();
let old: RegistryProcess;
beforeAll(async () => {
  old = await spawnRegistry({
    bin: (await installedRelease('0.1.0')).registryBin,
    databaseUrl: db.url,
    replicaId: 'lost-answer-010',
  });
}, 120_000);
afterAll(async () => {
  await old?.stop();
});

/** Applies the first terminal write, then loses its answer, as a cut after the commit would. */
class LosingClient extends RegistryClient {
  lost = 0;
  override async deltas(instanceId: string, deltas: JobDelta[]) {
    const res = await super.deltas(instanceId, deltas);
    if (this.lost === 0 && deltas.some((d) => d.status === 'completed')) {
      this.lost += 1;
      throw new RegistryUnreachableError(`${old.url}/jobs/batch`, new Error('socket hang up'), 'POST');
    }
    return res;
  }
}

describe('a terminal write whose answer was lost', () => {
  it('counts as committed when the registry answers already_terminal to the resend', async () => {
    const client = new LosingClient({ urls: [old.url], instanceId: 'lost-answer-worker' });
    const notices: WorkerNotice[] = [];
    const worker = new JobWorker({
      client,
      instanceId: 'lost-answer-worker',
      capability: 'lost-answer',
      concurrency: 1,
      onNotice: (n) => notices.push(n),
      handler: async () => ({ done: true }),
    });
    worker.start();
    try {
      const plain = new RegistryClient({ urls: [old.url] });
      const { id } = await plain.submit({
        capability: 'lost-answer',
        submitted_by: 't',
        submitted_payload: {},
      });
      const settled = await until('the attempt to settle', () =>
        notices.find((n) => n.type === 'settled' && n.jobId === id),
      );
      expect(client.lost).toBe(1);
      expect(settled).toMatchObject({ outcome: 'completed', committed: true, claimEpoch: 1 });
      const job = await plain.getJob(id as string);
      expect(job).toMatchObject({ status: 'completed', claim_epoch: 1 });
    } finally {
      await worker.stop();
    }
  }, 60_000);
});

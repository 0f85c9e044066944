/**
 * Task 1 of docs/writing-an-agent.md: submit a job, receive every step event and
 * the job's progress.
 *
 *   pnpm tsx examples/writing-an-agent/progress.ts
 */
import { RegistryClient, waitForJob } from '@mesh/sdk';

const client = new RegistryClient({
  urls: (process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000').split(','),
});
const { id } = await client.submit({
  capability: 'guide-progress',
  submitted_by: 'guide',
  submitted_payload: { steps: 5 },
});
const job = await waitForJob(client, id, {
  timeoutMs: 60_000,
  // Every event, in order, none missed (a long-poll on the job's events).
  onEvent: (e) => {
    const step = e.payload as { step: number; of: number };
    if (e.type === 'step') console.log(`event: step ${step.step} of ${step.of} done`);
  },
  // The latest progress when it changes (values between two reads may be skipped).
  onProgress: (j) =>
    console.log(`progress ${Math.round((j.progress ?? 0) * 100)}% ${j.progress_message ?? ''}`),
});
console.log(`${job.status} ${JSON.stringify(job.result)}`);
process.exit(job.status === 'completed' ? 0 : 1);

/**
 * Task 5 of docs/writing-an-agent.md: a job whose agent is killed (`kill -9`)
 * mid-job is re-run by another agent. Submit, kill the agent that prints
 * "guide-steps: started", start another, and this waits for the result.
 *
 *   pnpm tsx examples/writing-an-agent/crash.ts
 */
import { RegistryClient, waitForJob } from '@mesh/sdk';

const client = new RegistryClient({
  urls: (process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000').split(','),
});
const { id } = await client.submit({
  capability: 'guide-steps',
  submitted_by: 'guide',
  submitted_payload: { steps: 20 },
  // The lease window: a live agent renews it three times per window, and a dead
  // one's job goes back to the queue within it (plus one sweep).
  max_duration: 6,
  // The crash spends an attempt: one retry lets the job survive one crash.
  max_retries: 1,
});
console.log(`submitted ${id}`);
const started = Date.now();
const job = await waitForJob(client, id, { timeoutMs: 120_000 });
console.log(
  `${job.status} after ${job.attempt_count} attempts, ${Date.now() - started} ms: ${JSON.stringify(job.result)}`,
);
process.exit(job.status === 'completed' ? 0 : 1);

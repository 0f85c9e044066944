/**
 * Task 2 of docs/writing-an-agent.md: cancel a 20 s job once it has started.
 *
 *   pnpm tsx examples/writing-an-agent/cancel.ts
 */
import { RegistryClient, waitForJob } from '@mesh/sdk';

const client = new RegistryClient({
  urls: (process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000').split(','),
});
const { id } = await client.submit({
  capability: 'guide-slow',
  submitted_by: 'guide',
  submitted_payload: { seconds: 20 },
});
// Claimed: the job has an owner.
for (let i = 0; i < 600 && !(await client.getJob(id)).owner_instance_id; i++) {
  await new Promise((r) => setTimeout(r, 50));
}
const sent = Date.now();
await client.cancel(id, 'changed my mind');
const job = await waitForJob(client, id, { timeoutMs: 30_000 });
console.log(`${job.status} after ${Date.now() - sent} ms: ${job.error}`);
process.exit(job.status === 'cancelled' ? 0 : 1);

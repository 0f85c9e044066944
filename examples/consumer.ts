/**
 * A consumer: submits an `echo` job and waits for its result, showing progress.
 *
 *   pnpm tsx examples/consumer.ts "hello"    (registry at http://127.0.0.1:8000, or MESH_REGISTRY_URL)
 */
import { RegistryClient, waitForJob } from '@mesh/sdk';

const url = process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000';
const client = new RegistryClient({ urls: url.split(',') });
const { id } = await client.submit({
  capability: 'echo',
  submitted_by: 'example-consumer',
  submitted_payload: { text: process.argv[2] ?? 'hello' },
  max_duration: 60,
});
console.log(`submitted ${id}`);
const job = await waitForJob(client, id, {
  timeoutMs: 120_000,
  onProgress: (j) =>
    console.log(
      `  ${j.status}${j.progress !== null ? ` ${Math.round(j.progress * 100)}%` : ''} ${j.progress_message ?? ''}`,
    ),
});
console.log(job.status === 'completed' ? JSON.stringify(job.result) : `${job.status}: ${job.error}`);
process.exit(job.status === 'completed' ? 0 : 1);

/**
 * A consumer: submits an `echo` job and waits for its result, showing progress.
 * With --ask the provider asks before answering; this consumer says yes.
 *
 *   pnpm tsx examples/consumer.ts "hello" [--ask]   (registry at http://127.0.0.1:8000, or MESH_REGISTRY_URL)
 */
import { RegistryClient, waitForJob } from '@mesh/sdk';

const url = process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000';
const client = new RegistryClient({ urls: url.split(',') });
const ask = process.argv.includes('--ask');
const text = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 'hello';
const { id } = await client.submit({
  capability: 'echo',
  submitted_by: 'example-consumer',
  submitted_payload: { text, ask },
  max_duration: 60,
});
console.log(`submitted ${id}`);
const show = (j: { status: string; progress: number | null; progress_message: string | null }) =>
  console.log(
    `  ${j.status}${j.progress !== null ? ` ${Math.round(j.progress * 100)}%` : ''} ${j.progress_message ?? ''}`,
  );
let job = await waitForJob(client, id, { timeoutMs: 120_000, onProgress: show, until: ['input_required'] });
if (job.status === 'input_required') {
  console.log(`  provider asks: ${job.progress_message} → yes`);
  await client.sendInput(id, { shout: true });
  job = await waitForJob(client, id, { timeoutMs: 120_000, onProgress: show });
}
console.log(job.status === 'completed' ? JSON.stringify(job.result) : `${job.status}: ${job.error}`);
process.exit(job.status === 'completed' ? 0 : 1);

/**
 * Task 4 of docs/writing-an-agent.md: answer a job that asks for input, and see a
 * malformed answer refused by the handler's schema.
 *
 *   pnpm tsx examples/writing-an-agent/input.ts
 */
import { inputRejectedEventType, RegistryClient, waitForJob } from '@mesh/sdk';

const client = new RegistryClient({
  urls: (process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000').split(','),
});
const ask = async (answer: unknown) => {
  const { id } = await client.submit({
    capability: 'guide-approve',
    submitted_by: 'guide',
    submitted_payload: { amount: 42 },
  });
  const asking = await waitForJob(client, id, { until: ['input_required'], timeoutMs: 60_000 });
  console.log(`asked: ${asking.progress_message}`);
  await client.sendInput(id, answer);
  return waitForJob(client, id, {
    timeoutMs: 60_000,
    onEvent: (e) => {
      if (e.type === inputRejectedEventType) console.log(`rejected: ${JSON.stringify(e.payload)}`);
    },
  });
};

const good = await ask({ approved: true, note: 'ok' });
console.log(`answered: ${good.status} ${JSON.stringify(good.result)}`);
const bad = await ask({ approved: 'yes please' });
console.log(`malformed answer: ${bad.status}: ${bad.error}`);
process.exit(good.status === 'completed' && bad.status === 'failed' ? 0 : 1);

/**
 * Task 3 of docs/writing-an-agent.md: a failure that is retried, and one that is not.
 *
 *   pnpm tsx examples/writing-an-agent/retry.ts
 */
import { RegistryClient, waitForJob } from '@mesh/sdk';

const client = new RegistryClient({
  urls: (process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000').split(','),
});
const submit = (payload: Record<string, unknown>) =>
  client.submit({
    capability: 'guide-flaky',
    submitted_by: 'guide',
    submitted_payload: payload,
    max_retries: 2,
  });

// Fails twice, succeeds on the third attempt (max_retries: 2 allows 3 attempts).
const retried = await waitForJob(client, (await submit({ failAttempts: 2 })).id, { timeoutMs: 60_000 });
console.log(
  `retried: ${retried.status} after ${retried.attempt_count} attempts ${JSON.stringify(retried.result)}`,
);

// A NonRetryableError fails it on the first attempt, budget left or not.
const fatal = await waitForJob(client, (await submit({ failAttempts: 0, fatal: true })).id, {
  timeoutMs: 60_000,
});
console.log(`fatal: ${fatal.status} after ${fatal.attempt_count} attempt(s): ${fatal.error}`);
process.exit(retried.status === 'completed' && fatal.status === 'failed' ? 0 : 1);

/**
 * A provider agent: registers, heartbeats, and works `echo` jobs.
 *
 *   pnpm tsx examples/provider.ts            (registry at http://127.0.0.1:8000, or MESH_REGISTRY_URL)
 */
import { JobWorker, RegistryClient } from '@mesh/sdk';

const url = process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000';
const agentId = `echo-${Math.random().toString(16).slice(2, 10)}`;
const client = new RegistryClient({ urls: url.split(','), instanceId: agentId });

const registration = {
  agent_id: agentId,
  name: 'echo',
  runtime: 'typescript',
  version: '1.0.0',
  tools: [{ function_name: 'echo', capability: 'echo', kwargs: { task: true } }],
};
await client.request('POST', '/heartbeat', registration);
// HEAD every 5 s; a 410 or 202 asks for a full registration.
const beat = setInterval(async () => {
  const res = await fetch(`${url.split(',')[0]}/heartbeat/${agentId}`, { method: 'HEAD' }).catch(
    () => undefined,
  );
  if (res && res.status !== 200) await client.request('POST', '/heartbeat', registration).catch(() => {});
}, 5_000);

const worker = new JobWorker({
  client,
  instanceId: agentId,
  capability: 'echo',
  handler: async ({ payload, progress, signal }) => {
    await progress(0.5, 'thinking');
    await new Promise((r) => setTimeout(r, 500));
    if (signal.aborted) return undefined;
    return { echoed: payload };
  },
});
worker.start();
console.log(`${agentId} working echo jobs from ${url}; Ctrl-C to stop`);

process.once('SIGINT', async () => {
  await worker.stop();
  clearInterval(beat);
  await client.request('DELETE', `/agents/${agentId}`).catch(() => {});
  process.exit(0);
});

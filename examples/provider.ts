/**
 * A provider agent: registers, heartbeats, and works `echo` jobs. A payload
 * with `ask: true` makes it ask the submitter first (see examples/consumer.ts).
 *
 *   pnpm tsx examples/provider.ts            (registry at http://127.0.0.1:8000, or MESH_REGISTRY_URL)
 */
import { Agent, RegistryClient } from '@mesh/sdk';

const url = process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000';
const client = new RegistryClient({ urls: url.split(',') });
const agent = new Agent({ client, name: 'echo', version: '1.0.0' });

agent.worker({
  capability: 'echo',
  concurrency: 4,
  handler: async ({ payload, progress, requestInput, sendEvent, signal }) => {
    await progress(0.25, 'thinking');
    await sendEvent('thought', { about: payload.text });
    if (payload.ask) {
      const { shout } = await requestInput<{ shout?: boolean }>(`Shout "${payload.text}"?`);
      if (shout) payload = { ...payload, text: String(payload.text).toUpperCase() };
    }
    await new Promise((r) => setTimeout(r, 500));
    if (signal.aborted) return undefined; // cancelled, superseded or past its deadline: nothing is committed
    return { echoed: payload };
  },
});
agent.on('registered', (_res, why) => console.log(`registered (${why})`));
await agent.start();
console.log(`${agent.id} working echo jobs from ${url}; Ctrl-C to stop`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    await agent.stop(); // finishes (or releases) running jobs, then unregisters
    process.exit(0);
  });
}

import { runSideProcess } from '../support/side-process.ts';

/**
 * The requests of issue 18's findings, sent over and over to the registry at
 * argv[2] until stdin closes; its result: how many answers of each status (0:
 * no answer). Run by `hostile-beside-normal.test.ts` as a process of its own
 * (test/support/side-process.ts): `node --import tsx hostile-flood.ts URL`.
 */
const base = process.argv[2];
if (!base) throw new Error('usage: hostile-flood.ts <registry url>');

// Bodies built once: the flood's cost should be the registry's, not ours.
const nested = `${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}`;
const bodies: [path: string, body: string][] = [
  // 300,000 empty tools (about 900 KB).
  ['/heartbeat', `{"agent_id":"wedge","tools":[${Array(300_000).fill('{}').join(',')}]}`],
  // 2,000 dependencies on capability "".
  [
    '/heartbeat',
    JSON.stringify({
      agent_id: 'deps',
      tools: [{ function_name: 'f', capability: 'c', dependencies: Array(2_000).fill({ capability: '' }) }],
    }),
  ],
  // A path-smuggling http_host aimed at the admin routes.
  [
    '/heartbeat',
    JSON.stringify({
      agent_id: 'ssrf',
      http_host: '127.0.0.1:1/admin/fleet/drain#',
      http_port: 80,
      tools: [],
    }),
  ],
  // A claim with a 20 KB instance id, on the normal stream's capability.
  ['/jobs/claim', JSON.stringify({ capability: 'normal', instance_id: 'i'.repeat(20 * 1024) })],
  // A completion whose result nests 5,000 levels.
  [
    '/jobs/batch',
    `{"instance_id":"x","deltas":[{"id":"00000000-0000-0000-0000-000000000000","status":"completed","result":${nested}}]}`,
  ],
];

const send = async (path: string, body: string) => {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  await res.arrayBuffer();
  return res.status;
};
await runSideProcess(async (running) => {
  const statuses: Record<number, number> = {};
  await Promise.all(
    bodies.map(async ([path, body]) => {
      while (running()) {
        const status = await send(path, body).catch(() => 0);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  return statuses;
});

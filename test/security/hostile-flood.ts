import { Agent, request } from 'node:http';
import { runSideProcess } from '../support/side-process.ts';

/**
 * The requests of issue 18's findings, sent over and over to the registry at
 * argv[2] until stdin closes; its result: how many answers of each status (0:
 * no answer). Run by `hostile-beside-normal.test.ts` as a process of its own
 * (test/support/side-process.ts): `node --import tsx hostile-flood.ts URL`.
 */
const base = process.argv[2];
if (!base) throw new Error('usage: hostile-flood.ts <registry url>');

// Bodies built and encoded once, sent over kept-alive node:http connections:
// the flood's cost should be the registry's, not ours (on this machine the
// attacker's CPU is taken from the registry's cores; a real one's is not).
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

const agent = new Agent({ keepAlive: true, maxSockets: bodies.length });
const encoded = bodies.map(([path, body]) => [path, Buffer.from(body)] as const);
const send = (path: string, body: Buffer) =>
  new Promise<number>((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
await runSideProcess(async (running) => {
  const statuses: Record<number, number> = {};
  await Promise.all(
    encoded.map(async ([path, body]) => {
      while (running()) {
        const status = await send(path, body).catch(() => 0);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  agent.destroy();
  return statuses;
});

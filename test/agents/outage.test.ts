import { freePort, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';

const db = useTestDatabase();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A minimal live agent: HEAD heartbeat (re-registering on 410) and lease
 * renewal for the jobs it holds, forgiving a registry that is down.
 */
function startAgent(base: string, agentId: string, capability: string) {
  const held: { id: string; claim_epoch: number }[] = [];
  let running = true;
  let pausedUntil = 0;
  const post = (path: string, body: unknown) =>
    fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const register = () =>
    post('/heartbeat', { agent_id: agentId, name: agentId, tools: [{ function_name: 'f', capability }] });
  const loop = (async () => {
    while (running) {
      if (Date.now() < pausedUntil) {
        await sleep(50);
        continue;
      }
      try {
        const beat = await fetch(`${base}/heartbeat/${agentId}`, { method: 'HEAD' });
        if (beat.status === 410) await register();
        if (held.length) await post('/jobs/leases', { instance_id: agentId, leases: held });
      } catch {
        // registry unreachable: try again
      }
      await sleep(300);
    }
  })();
  return {
    held,
    register,
    post,
    /** Like an SDK backing off while the registry is unreachable: silent for `ms`. */
    pause(ms: number) {
      pausedUntil = Date.now() + ms;
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}

async function outage(graceMs: number) {
  const port = await freePort();
  const env = {
    MESH_AGENT_TIMEOUT: '2s',
    MESH_HEALTH_CHECK_INTERVAL: '200ms',
    MESH_SWEEP_INTERVAL: '200ms',
    MESH_REPLICA_HEARTBEAT: '200ms',
    MESH_OUTAGE_GRACE: `${graceMs}ms`,
  };
  let registry = await spawnRegistry({ databaseUrl: db.url, replicaId: 'solo', port, env });
  const capability = `outage-${graceMs}`;
  const agent = startAgent(registry.url, `agent-${graceMs}`, capability);
  await agent.register();
  for (let i = 0; i < 5; i++) {
    await agent.post('/jobs', { capability, submitted_by: 's', submitted_payload: { i }, max_duration: 3 });
  }
  const claimed = await (
    await agent.post('/jobs/claim', { capability, instance_id: `agent-${graceMs}`, max_jobs: 5 })
  ).json();
  agent.held.push(
    ...(claimed as { claimed: { id: string; claim_epoch: number }[] }).claimed.map((j) => ({
      id: j.id,
      claim_epoch: j.claim_epoch,
    })),
  );
  expect(agent.held).toHaveLength(5);

  // The whole registry goes down for longer than the agent timeout and the leases.
  // The agent backs off and comes back 1.5 s after the registry does.
  agent.pause(60_000);
  await registry.kill();
  await sleep(5_000);
  registry = await spawnRegistry({ databaseUrl: db.url, replicaId: 'solo', port, env });
  agent.pause(1_500);
  // Past the grace period, with the agent alive all along.
  await sleep(Math.max(graceMs, 1_000) + 2_000);
  await agent.stop();
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    return await sql<{ owner: string | null; epoch: number; status: string }[]>`
      select owner_instance_id as owner, claim_epoch::int as epoch, status from jobs where capability = ${capability}`;
  } finally {
    await sql.end();
    await registry.stop();
  }
}

describe('registry outage (reference §11 item 4, real processes)', () => {
  it('with the outage grace, a live agent keeps every job it held across a whole-registry outage', async () => {
    const rows = await outage(6_000);
    expect(rows).toHaveLength(5);
    expect(rows.every((r) => r.owner === 'agent-6000' && r.epoch === 1 && r.status === 'working')).toBe(true);
  }, 60_000);

  it('without it (MESH_OUTAGE_GRACE=0), the same outage takes the jobs away (the MCP Mesh behaviour)', async () => {
    const rows = await outage(0);
    expect(rows.some((r) => r.owner !== 'agent-0')).toBe(true);
  }, 60_000);
});

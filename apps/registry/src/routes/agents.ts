import { type AgentsListResponse, agentRegistration, headers, limits } from '@mesh/protocol';
import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { agentsJson } from '../services/agent-listing.ts';
import { readJson } from './input.ts';

/** MCP Mesh 3.7's agent routes: register / heartbeat, fast heartbeat, list, unregister. */
export const agentRoutes = new Hono<AppEnv>()
  .post('/heartbeat', async (c) => {
    const body = await readJson(c, agentRegistration, {
      // 300,000 tools would cost their parse and validation before the
      // service's own bound refused them (issue 18): count them first.
      maxItems: { tools: [limits.maxToolsPerAgent, 'tools per agent'] },
    });
    // Semantic rejections answer 200 with status "error", as in 3.7.
    return c.json(await c.get('deps').agents.register(body, c.req.header(headers.sdkVersion) ?? null));
  })
  .get('/heartbeat/:id', async (c) => {
    // Only HEAD exists here (gin has no GET route for it).
    if (c.req.method !== 'HEAD') return c.text('404 page not found', 404);
    const { agents, gate } = c.get('deps');
    const beat = await agents.fastHeartbeat(c.req.param('id'));
    // Pending work is advertised only where it can be claimed: not while this replica drains.
    const extra: Record<string, string> =
      beat.status !== 410 && beat.pending > 0 && !gate.draining
        ? { [headers.pendingJobs]: String(beat.pending) }
        : {};
    return c.body(null, beat.status, extra);
  })
  .get('/agents', async (c) => {
    // Bounded (issue 18): the oldest limits.maxAgentsListed agents; `truncated` (ours) says more exist.
    const { agents: list, truncated } = await c.get('deps').agents.list();
    // AgentsListResponse, written as text: each agent's description is kept as
    // JSON text between listings (agent-listing.ts), its last_seen put in.
    const rest: Omit<AgentsListResponse, 'agents'> = {
      count: list.length,
      timestamp: new Date().toISOString(),
      ...(truncated ? { truncated: true } : {}),
    };
    return c.body(`{"agents":${agentsJson(list)},${JSON.stringify(rest).slice(1)}`, 200, {
      'Content-Type': 'application/json',
    });
  })
  .delete('/agents/:id', async (c) => {
    await c.get('deps').agents.unregister(c.req.param('id'));
    return c.body(null, 204);
  });

import type { AgentInfo, AgentsListResponse, ResolvedDependency } from '@mesh/protocol';
import { Agent, type RegistrationReason, waitForJob } from '@mesh/sdk';
import { describe, expect, it } from 'vitest';
import { targets, until, useTarget } from './targets.ts';

/**
 * The Agent (register, fast heartbeat, full heartbeat on 202, re-register on
 * 410, unregister) against our registry and the real MCP Mesh registry 3.7.1.
 */
describe.each(targets)('Agent against $name', (target) => {
  const registry = useTarget(target);
  const listed = async (id: string): Promise<AgentInfo | undefined> =>
    (await registry.client.request<AgentsListResponse>('GET', '/agents')).agents?.find((a) => a.id === id);

  it('registers, heartbeats, follows topology changes, registers again after a 410, and unregisters', async () => {
    await registry.ready;
    const { client } = registry;
    const consumer = new Agent({
      client,
      name: 'sdk-consumer',
      heartbeatIntervalMs: 100,
      tools: [{ function_name: 'report', capability: 'report', dependencies: [{ capability: 'clock' }] }],
    });
    const provider = new Agent({
      client,
      name: 'sdk-clock',
      heartbeatIntervalMs: 100,
      endpoint: { host: '127.0.0.1', port: 9301 },
      tools: [{ function_name: 'now', capability: 'clock' }],
    });
    try {
      expect(consumer.id).toMatch(/^sdk-consumer-[0-9a-f]{8}$/);
      // Ids are per instance: a restarted agent is a new one.
      expect(new Agent({ client, name: 'sdk-consumer' }).id).not.toBe(consumer.id);
      const reasons: RegistrationReason[] = [];
      consumer.on('registered', (_res, why) => reasons.push(why));
      const changes: Record<string, ResolvedDependency[]>[] = [];
      consumer.on('dependencies', (resolved) => changes.push(resolved));

      await consumer.start();
      expect(reasons).toEqual(['start']);
      expect(consumer.dependencies).toEqual({
        report: [
          { agent_id: '', capability: 'clock', endpoint: '', function_name: '', status: 'unresolved' },
        ],
      });
      expect(await listed(consumer.id)).toMatchObject({
        name: 'sdk-consumer',
        runtime: 'typescript',
        version: '1.0.0',
        status: 'healthy',
      });

      // A provider joins: the consumer's HEAD answers 202, its full heartbeat resolves the dependency.
      await provider.start();
      const resolved = await until('the dependency to resolve', () => changes[0]);
      expect(resolved.report?.[0]).toMatchObject({
        agent_id: provider.id,
        function_name: 'now',
        capability: 'clock',
        endpoint: 'http://127.0.0.1:9301',
        status: 'available',
      });
      expect(reasons).toContain('topology');

      // The registry forgets the consumer (marked unhealthy): HEAD answers 410 and it registers again, same id.
      await client.unregister(consumer.id);
      await until('a re-registration', () => reasons.includes('reregister'));
      await until(
        'the consumer to be healthy again',
        async () => (await listed(consumer.id))?.status === 'healthy',
      );

      // Stopping unregisters.
      await consumer.stop();
      await provider.stop();
      expect((await listed(consumer.id))?.status).toBe('unhealthy');
      expect((await listed(provider.id))?.status).toBe('unhealthy');
      await expect(consumer.start()).rejects.toThrow(/starts once/);
    } finally {
      await consumer.stop();
      await provider.stop();
    }
  });

  it('runs a job worker under its own id and declares its capability as a task tool', async () => {
    await registry.ready;
    const { client } = registry;
    const agent = new Agent({ client, name: 'sdk-worker-agent', heartbeatIntervalMs: 200 });
    agent.worker({
      capability: 'sdk-agent-echo',
      handler: async ({ payload }) => ({ echoed: payload.text }),
    });
    try {
      await agent.start();
      const { id } = await client.submit({
        capability: 'sdk-agent-echo',
        submitted_by: 't',
        submitted_payload: { text: 'hi' },
      });
      const job = await waitForJob(client, id, { timeoutMs: 30_000 });
      expect(job).toMatchObject({
        status: 'completed',
        result: { echoed: 'hi' },
        owner_instance_id: agent.id,
      });
      const info = await listed(agent.id);
      expect(info?.capabilities).toEqual([
        expect.objectContaining({ name: 'sdk-agent-echo', function_name: 'sdk-agent-echo', task: true }),
      ]);
      // A worker added to a running agent is declared with the next full heartbeat.
      agent.worker({ capability: 'sdk-agent-late', handler: async () => ({ late: true }) });
      await until(
        'the new capability to be listed',
        async () => (await listed(agent.id))?.capabilities?.some((c) => c.name === 'sdk-agent-late') ?? false,
      );
      const late = await client.submit({
        capability: 'sdk-agent-late',
        submitted_by: 't',
        submitted_payload: {},
      });
      expect(await waitForJob(client, late.id, { timeoutMs: 30_000 })).toMatchObject({
        status: 'completed',
        result: { late: true },
      });
    } finally {
      await agent.stop();
    }
    expect((await listed(agent.id))?.status).toBe('unhealthy');
  });
});

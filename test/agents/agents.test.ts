import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useTestRegistry } from '../support/registry-app.ts';
import { reportSvc } from '../support/sample-agents.ts';

const r = useTestRegistry();

const register = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  r.call(
    'POST',
    '/heartbeat',
    { version: '1.0.0', runtime: 'typescript', namespace: 'default', ...body },
    headers,
  );
const head = (id: string) => r.call('HEAD', `/heartbeat/${id}`);

describe('agents (reference §1.4–1.8, transcript 02)', () => {
  it('lists no agents as null before any registers', async () => {
    const res = await r.call('GET', '/agents');
    expect(res.body).toEqual({ agents: null, count: 0, timestamp: expect.any(String) });
  });

  it('registers, resolves dependencies positionally with placeholders, and refreshes', async () => {
    const time = await register({
      agent_id: 'time-svc-1a2b3c4d',
      name: 'time-svc',
      http_host: '127.0.0.1',
      http_port: 9101,
      tools: [
        { function_name: 'get_time', capability: 'time_service', tags: ['system'], kwargs: { timeout: 30 } },
      ],
    });
    expect(time.status).toBe(200);
    expect(time.body).toEqual({
      agent_id: 'time-svc-1a2b3c4d',
      status: 'success',
      message: 'Agent registered via heartbeat',
      timestamp: expect.any(String),
      dependencies_resolved: {},
      llm_tools: {},
    });
    const report = await register(reportSvc, { 'x-mesh-sdk-version': '0.1.0' });
    expect(report.body.dependencies_resolved).toEqual({
      make_report: [
        {
          agent_id: 'time-svc-1a2b3c4d',
          capability: 'time_service',
          endpoint: 'http://127.0.0.1:9101',
          function_name: 'get_time',
          kwargs: { timeout: 30 },
          status: 'available',
        },
        {
          agent_id: '',
          capability: 'weather_service',
          endpoint: '',
          function_name: '',
          status: 'unresolved',
        },
      ],
    });
    const again = await register({
      agent_id: 'time-svc-1a2b3c4d',
      tools: [{ function_name: 'get_time', capability: 'time_service', tags: ['system'] }],
    });
    expect(again.body.message).toBe('Agent updated via heartbeat');

    const list = (await r.call('GET', '/agents')).body;
    expect(list.count).toBe(2);
    const rep = list.agents.find((a: { id: string }) => a.id === 'report-svc-5e6f7a8b');
    expect(rep).toMatchObject({
      name: 'report-svc',
      agent_type: 'mcp_agent',
      runtime: 'typescript',
      status: 'healthy',
      endpoint: 'http://127.0.0.1:9102',
      version: '1.0.0',
      total_dependencies: 2,
      dependencies_resolved: 1,
      sdk_version: '0.1.0',
      capabilities: [
        { name: 'report_service', function_name: 'make_report', version: '1.0.0', available: true },
      ],
      dependency_resolutions: [
        {
          function_name: 'make_report',
          capability: 'time_service',
          status: 'available',
          provider_agent_id: 'time-svc-1a2b3c4d',
          mcp_tool: 'get_time',
        },
        { function_name: 'make_report', capability: 'weather_service', status: 'unresolved' },
      ],
      llm_tool_resolutions: null,
      llm_provider_resolutions: null,
    });
    expect(new Date(rep.created_at).getTime()).not.toBeNaN();
    expect(new Date(rep.last_seen).getTime()).not.toBeNaN();
  });

  it('rejects invalid ids on first registration with HTTP 200 status error, and malformed JSON with 400', async () => {
    const bad = await register({ agent_id: 'Bad_ID' });
    expect(bad.status).toBe(200);
    expect(bad.body).toEqual({
      agent_id: 'Bad_ID',
      status: 'error',
      message: expect.stringMatching(
        /^validation failed: agent_id: agent_id must contain only lowercase alphanumeric characters and hyphens/,
      ),
      timestamp: expect.any(String),
    });
    expect((await r.call('POST', '/heartbeat', '{"agent_id":')).status).toBe(400);
    expect(
      (await r.call('POST', '/heartbeat', { agent_id: 'x', tools: [{ dependencies: [['a']] }] })).status,
    ).toBe(400);
  });

  it('answers HEAD with 410 / 200 / 202 and the pending-jobs hint for claimable work only', async () => {
    expect((await head('nobody')).status).toBe(410);
    expect((await r.call('GET', '/heartbeat/nobody')).status).toBe(404);
    await register({
      agent_id: 'hint-1',
      name: 'hint',
      tools: [{ function_name: 'f', capability: 'hinted' }],
    });
    let res = await head('hint-1');
    expect(res.status).toBe(200);
    expect(res.headers.get('x-mesh-pending-jobs')).toBeNull();
    for (let i = 0; i < 3; i++)
      await r.call('POST', '/jobs', { capability: 'hinted', submitted_by: 's', submitted_payload: {} });
    await r.call('POST', '/jobs/claim', { capability: 'hinted', instance_id: 'hint-1' });
    res = await head('hint-1');
    expect(res.headers.get('x-mesh-pending-jobs')).toBe('2');
    // Another agent joining changes the topology: 202 until a full POST.
    await register({ agent_id: 'other-1', tools: [] });
    expect((await head('hint-1')).status).toBe(202);
    expect((await head('hint-1')).status).toBe(202);
    await register({
      agent_id: 'hint-1',
      name: 'hint',
      tools: [{ function_name: 'f', capability: 'hinted' }],
    });
    expect((await head('hint-1')).status).toBe(200);
    // While this replica drains, no work is advertised here.
    await r.call('POST', '/admin/drain');
    expect((await head('hint-1')).headers.get('x-mesh-pending-jobs')).toBeNull();
    await r.call('DELETE', '/admin/drain');
    expect((await head('hint-1')).headers.get('x-mesh-pending-jobs')).toBe('2');
  });

  it('unregisters with 204 (idempotent): the agent turns unhealthy and gets 410 until it registers again', async () => {
    await register({ agent_id: 'leaving-1', tools: [] });
    expect((await r.call('DELETE', '/agents/leaving-1')).status).toBe(204);
    expect((await r.call('DELETE', '/agents/leaving-1')).status).toBe(204);
    expect((await r.call('DELETE', '/agents/never-was')).status).toBe(204);
    expect((await head('leaving-1')).status).toBe(410);
    const list = (await r.call('GET', '/agents')).body.agents;
    expect(list.find((a: { id: string }) => a.id === 'leaving-1').status).toBe('unhealthy');
    await register({ agent_id: 'leaving-1', tools: [] });
    expect([200, 202]).toContain((await head('leaving-1')).status);
  });

  it('health monitor: a silent agent turns unhealthy; its jobs go back to the queue (orphan sweep)', async () => {
    await register({ agent_id: 'silent-1', tools: [{ function_name: 'f', capability: 'orph' }] });
    await register({ agent_id: 'alive-1', tools: [{ function_name: 'f', capability: 'orph' }] });
    const mk = (max_retries: number) =>
      r
        .call('POST', '/jobs', { capability: 'orph', submitted_by: 's', submitted_payload: {}, max_retries })
        .then((x) => x.body.id);
    const a = await mk(1);
    const b = await mk(0);
    const c = await mk(1);
    await r.call('POST', '/jobs/claim', { capability: 'orph', instance_id: 'silent-1', max_jobs: 2 });
    await r.call('POST', '/jobs/claim', { capability: 'orph', instance_id: 'alive-1' });
    const ghost = await mk(1);
    await r.call('POST', '/jobs/claim', { capability: 'orph', instance_id: 'never-registered' });
    await r.sql`update agents set updated_at = now() - interval '1 minute' where agent_id = 'silent-1'`;
    expect(await r.agents.markSilentUnhealthy()).toEqual(['silent-1']);
    expect((await head('silent-1')).status).toBe(410);
    // Just claimed: the owner is visibly alive (its heartbeat only lags), so the
    // jobs are left to their leases rather than swept and re-claimed in a loop.
    expect(await r.sweeper.resetOrphans()).toEqual({ requeued: 0, failed: 0 });
    // Silent on its jobs for longer than the agent timeout too: orphaned.
    await r.sql`update jobs set last_heartbeat_at = now() - interval '1 minute' where owner_instance_id = 'silent-1'`;
    expect(await r.sweeper.resetOrphans()).toEqual({ requeued: 1, failed: 1 });
    const job = async (id: string) => (await r.call('GET', `/jobs/${id}`)).body;
    expect(await job(a)).toMatchObject({ status: 'working', owner_instance_id: null, attempt_count: 1 });
    expect(await job(b)).toMatchObject({ status: 'failed', error: 'orphaned: max retries exceeded' });
    expect(await job(c)).toMatchObject({ owner_instance_id: 'alive-1' });
    // An owner that never registered is left to its lease.
    expect(await job(ghost)).toMatchObject({ owner_instance_id: 'never-registered' });
  });

  it('health monitor fenced on its own fleet heartbeat: back from an outage, the grace starts before any health check acts (issue 29 item 4)', async () => {
    // The interleaving that lost agents, forced step by step: the database
    // comes back, this replica's health check runs before its fleet heartbeat.
    const { ReplicaRegistry } = await import('../../apps/registry/src/services/replicas.ts');
    const { DrainGate } = await import('../../apps/registry/src/services/drain.ts');
    const { createLogger } = await import('@mesh/registry');
    const identity = {
      replicaId: 'fenced-r',
      bootId: '00000000-0000-4000-8000-00000000f0f0',
      version: 'test',
      schemaVersion: 1,
      uptimeSeconds: () => 1,
    };
    const replicas = new ReplicaRegistry(
      r.sql,
      identity,
      { main: 'http://127.0.0.1:1', admin: undefined },
      1_000,
      new DrainGate(),
      createLogger({ logLevel: 'silent', logFormat: 'json', replicaId: 'fenced-r' }),
    );
    replicas.outageGraceMs = 60_000;
    await register({ agent_id: 'fenced-1', tools: [] });
    // The registry was away a minute: the agent looks silent, and so does this replica
    // (the only one; its last fleet heartbeat is as old).
    await r.sql`delete from registry_settings where key = 'outage_grace_until'`;
    await r.sql`update registry_replicas set stopped_at = now() where replica_id <> 'fenced-r'`;
    await r.sql`
      insert into registry_replicas (replica_id, boot_id, version, schema_version, main_url, started_at, last_seen_at)
      values ('fenced-r', ${identity.bootId}, 'test', 1, 'http://127.0.0.1:1', now() - interval '2 minutes', now() - interval '1 minute')`;
    await r.sql`update agents set updated_at = now() - interval '1 minute' where agent_id = 'fenced-1'`;
    const fence = { replicaId: 'fenced-r', liveWindowMs: 10_000 };
    // 1. The health check runs first: fenced, it does nothing (unfenced it marked the agent).
    expect(await r.agents.markSilentUnhealthy(fence)).toEqual([]);
    // 2. The fleet heartbeat: it finds the replica was away and starts the grace in the same statement.
    await replicas.report();
    const [grace] =
      await r.sql`select value->>'until' as until from registry_settings where key = 'outage_grace_until'`;
    expect(grace?.until).toBeDefined();
    // 3. The next health check: the heartbeat is current, and the grace keeps the agent.
    expect(await r.agents.markSilentUnhealthy(fence)).toEqual([]);
    expect((await head('fenced-1')).status).toBe(200);
    // Without the grace (it ended) the silent agent is marked as before.
    await r.sql`delete from registry_settings where key = 'outage_grace_until'`;
    await r.sql`update agents set updated_at = now() - interval '1 minute' where agent_id = 'fenced-1'`;
    expect(await r.agents.markSilentUnhealthy(fence)).toEqual(['fenced-1']);
    await r.sql`delete from registry_replicas where replica_id = 'fenced-r'`;
  });

  it('outage grace: after the whole registry was down, no sweep acts until agents had time to come back', async () => {
    await register({ agent_id: 'grace-1', tools: [{ function_name: 'f', capability: 'grace' }] });
    const id = (
      await r.call('POST', '/jobs', {
        capability: 'grace',
        submitted_by: 's',
        submitted_payload: {},
        max_duration: 5,
      })
    ).body.id;
    await r.call('POST', '/jobs/claim', { capability: 'grace', instance_id: 'grace-1' });
    // The registry was down a minute: the agent looks silent and its lease lapsed.
    await r.sql`update agents set updated_at = now() - interval '1 minute' where agent_id = 'grace-1'`;
    await r.sql`update jobs set lease_expires_at = now() - interval '1 second' where id = ${id}`;
    expect(await r.agents.startOutageGraceIfAlone('test', 3_000, 60_000)).toBe(true);
    expect(await r.agents.markSilentUnhealthy()).toEqual([]);
    expect(await r.sweeper.expireLeases()).toEqual({ requeued: 0, failed: 0 });
    // The agent comes back and renews: nothing was taken from it.
    expect((await head('grace-1')).status).toBe(200);
    const renewed = await r.call('POST', '/jobs/leases', {
      instance_id: 'grace-1',
      leases: [{ id, claim_epoch: 1 }],
    });
    expect(renewed.body.results[0].outcome).toBe('renewed');
    await r.sql`update registry_settings set value = jsonb_build_object('until', now() - interval '1 second') where key = 'outage_grace_until'`;
    expect(await r.sweeper.expireLeases()).toEqual({ requeued: 0, failed: 0 });
    expect((await r.call('GET', `/jobs/${id}`)).body).toMatchObject({
      owner_instance_id: 'grace-1',
      claim_epoch: 1,
    });
  });

  it('forwards a cancel to the owner agent endpoint, without holding the caller', async () => {
    const received: { url: string; body: string }[] = [];
    const sink = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        received.push({ url: req.url ?? '', body });
        res.end('{"cancelled":true}');
      });
    });
    await new Promise<void>((res) => sink.listen(0, '127.0.0.1', res));
    try {
      const port = (sink.address() as AddressInfo).port;
      await register({ agent_id: 'cancel-me', http_host: '127.0.0.1', http_port: port, tools: [] });
      const id = (
        await r.call('POST', '/jobs', { capability: 'cxl', submitted_by: 's', submitted_payload: {} })
      ).body.id;
      await r.call('POST', '/jobs/claim', { capability: 'cxl', instance_id: 'cancel-me' });
      const res = await r.call('POST', `/jobs/${id}/cancel`, { reason: 'user_requested' });
      expect(res.body).toEqual({ status: 'cancelled', forwarded_to_instance_id: 'cancel-me' });
      const deadline = Date.now() + 5_000;
      while (received.length === 0 && Date.now() < deadline) await new Promise((x) => setTimeout(x, 20));
      expect(received).toEqual([{ url: `/jobs/${id}/cancel`, body: '{"reason":"user_requested"}' }]);
    } finally {
      sink.close();
    }
  });
});

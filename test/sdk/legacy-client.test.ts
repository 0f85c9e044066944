import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * An older client (an MCP Mesh 3.7 SDK) against our registry: raw 3.7 wire
 * calls with plain fetch, no claim_epoch anywhere and no X-Mesh-* headers.
 * Everything works through the legacy owner-only path (DESIGN.md §5).
 */
const db = useTestDatabase();
let registry: RegistryProcess;
beforeAll(async () => {
  registry = await spawnRegistry({ databaseUrl: db.url, replicaId: 'legacy' });
}, 60_000);
afterAll(async () => {
  await registry?.stop();
});

/** Exactly what a 3.7 client sends: a JSON content type and nothing else. */
async function wire(method: string, path: string, body?: unknown) {
  const res = await fetch(`${registry.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: raw wire bodies
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as any };
}

const agentId = 'legacy-py-1a2b3c4d';
const capability = 'legacy-cap';

describe('an older (3.7) client against our registry', () => {
  it('registers and heartbeats, and is listed as a legacy agent', async () => {
    const reg = await wire('POST', '/heartbeat', {
      agent_id: agentId,
      name: 'legacy-py',
      runtime: 'python',
      tools: [{ function_name: 'work', capability, kwargs: { task: true } }],
    });
    expect(reg.status).toBe(200);
    expect(reg.body).toMatchObject({ agent_id: agentId, status: 'success', dependencies_resolved: {} });
    const beat = await wire('HEAD', `/heartbeat/${agentId}`);
    expect([200, 202]).toContain(beat.status);
    const listed = (await wire('GET', '/agents')).body.agents.find((a: { id: string }) => a.id === agentId);
    expect(listed).toMatchObject({ status: 'healthy', runtime: 'python', sdk_version: null });
  });

  it('claims, reports progress, asks for input, reads events and completes without epochs', async () => {
    const { body: created } = await wire('POST', '/jobs', {
      capability,
      submitted_by: agentId,
      submitted_payload: { n: 1 },
    });
    // The pending-jobs hint a 3.7 agent may read.
    expect((await wire('HEAD', `/heartbeat/${agentId}`)).headers.get('x-mesh-pending-jobs')).toBe('1');
    const claim = await wire('POST', '/jobs/claim', { capability, instance_id: agentId });
    expect(claim.status).toBe(200);
    expect(claim.body.claimed).toHaveLength(1);
    const id = claim.body.claimed[0].id as string;
    expect(id).toBe(created.id);

    const delta = (d: Record<string, unknown>, instance = agentId) =>
      wire('POST', '/jobs/batch', { instance_id: instance, deltas: [{ id, ...d }] });
    expect((await delta({ progress: 0.5, progress_message: 'halfway' })).body).toEqual({
      accepted: 1,
      rejected: [],
    });
    expect((await delta({ status: 'input_required', progress_message: 'Continue?' })).body.accepted).toBe(1);
    expect((await wire('GET', `/jobs/${id}`)).body).toMatchObject({
      status: 'input_required',
      progress_message: 'Continue?',
      owner_instance_id: agentId,
    });
    // A consumer answers; the legacy owner reads anonymously (no identity pair).
    expect(
      (await wire('POST', `/jobs/${id}/events`, { type: 'user_input', payload: { go: true } })).status,
    ).toBe(200);
    const events = await wire('GET', `/jobs/${id}/events?after=0&types=user_input&wait=1`);
    expect(events.status).toBe(200);
    expect(events.body).toMatchObject({
      events: [{ seq: 1, type: 'user_input', payload: { go: true } }],
      next_after: 1,
    });
    // A write by someone else is refused: the owner-only check.
    expect((await delta({ progress: 0.9 }, 'intruder-0000')).body).toEqual({
      accepted: 0,
      rejected: [{ id, reason: 'not_owner' }],
    });
    expect((await delta({ status: 'completed', progress: 1, result: { ok: true } })).body).toEqual({
      accepted: 1,
      rejected: [],
    });
    expect((await wire('GET', `/jobs/${id}`)).body).toMatchObject({
      status: 'completed',
      result: { ok: true },
      attempt_count: 1,
      claim_epoch: 1,
    });
    // Terminal is final, for the owner too.
    expect((await delta({ status: 'failed', error: 'late' })).body.rejected).toEqual([
      { id, reason: 'already_terminal' },
    ]);
  });

  it('releases without an epoch (owner only), and the job is claimed again', async () => {
    const { body: created } = await wire('POST', '/jobs', {
      capability,
      submitted_by: agentId,
      submitted_payload: { n: 2 },
      max_retries: 1,
    });
    const id = created.id as string;
    expect(
      (await wire('POST', '/jobs/claim', { capability, instance_id: agentId })).body.claimed[0],
    ).toMatchObject({ id, attempt_count: 1 });
    const intruder = await wire('POST', `/jobs/${id}/release`, {
      instance_id: 'intruder-0000',
      reason: 'mine',
    });
    expect(intruder.status).toBe(403);
    expect(intruder.body).toMatchObject({
      error: 'caller is not the current owner of this job',
      code: 'not_owner',
    });
    const released = await wire('POST', `/jobs/${id}/release`, { instance_id: agentId, reason: 'busy' });
    expect(released).toMatchObject({ status: 200, body: { status: 'working', attempt_count: 1 } });
    expect((await wire('GET', `/jobs/${id}`)).body).toMatchObject({
      status: 'working',
      owner_instance_id: null,
    });
    const again = await wire('POST', '/jobs/claim', { capability, instance_id: agentId });
    expect(again.body.claimed[0]).toMatchObject({ id, attempt_count: 2, claim_epoch: 2 });
    expect(
      (
        await wire('POST', '/jobs/batch', {
          instance_id: agentId,
          deltas: [{ id, status: 'completed', result: { second: true } }],
        })
      ).body,
    ).toEqual({ accepted: 1, rejected: [] });
  });

  it('unregisters (204), after which HEAD answers 410', async () => {
    expect((await wire('DELETE', `/agents/${agentId}`)).status).toBe(204);
    expect((await wire('HEAD', `/heartbeat/${agentId}`)).status).toBe(410);
  });
});

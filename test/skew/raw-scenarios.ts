import { expect } from 'vitest';
import { until } from '../support/until.ts';
import { type Cell, observe, type Scenario, type ScenarioKey, settledFields, sleep } from './cell.ts';
import { shortLeaseSeconds } from './kinds.ts';
import { RawAgent } from './raw-agent.ts';

/**
 * The matrix's scenarios for a raw 3.7 client (`RawAgent`): it submits, claims
 * and writes by hand, with no claim epoch and no identity headers, and reads
 * back as a 3.7 consumer would. Afterwards the tap must show none of our
 * extensions in its traffic.
 */

async function withAgents<T>(
  cell: Cell,
  names: string[],
  capabilities: string[],
  body: (...agents: RawAgent[]) => Promise<T>,
): Promise<T> {
  const agents: RawAgent[] = [];
  try {
    for (const name of names)
      agents.push(await RawAgent.start(cell.tap.url, `${cell.prefix}-${name}`, capabilities));
    const result = await body(...agents);
    expectRawTraffic(cell);
    return result;
  } finally {
    for (const a of agents) await a.stop();
  }
}

/** Nothing of ours went over the wire: no claim_epoch in any body or query, no X-Mesh-* header. */
function expectRawTraffic(cell: Cell): void {
  for (const c of cell.tap.calls) {
    expect(c.headerNames.filter((h) => h.startsWith('x-mesh-'))).toEqual([]);
    expect(c.query.has('claim_epoch')).toBe(false);
    expect(JSON.stringify(c.body ?? {})).not.toContain('claim_epoch');
  }
}

async function submit(agent: RawAgent, capability: string, extra: Record<string, unknown> = {}) {
  const res = await agent.wire('POST', '/jobs', {
    capability,
    submitted_by: agent.id,
    submitted_payload: { n: 7 },
    ...extra,
  });
  expect(res.status).toBe(201);
  return res.body.id as string;
}

const readBack = async (agent: RawAgent, id: string) => (await agent.wire('GET', `/jobs/${id}`)).body;

const completion: Scenario = (cell) => {
  const capability = `${cell.prefix}-completion`;
  return withAgents(cell, ['completion'], [capability], async (agent) => {
    const id = await submit(agent, capability);
    const claimed = await agent.claim(capability);
    expect(claimed).toMatchObject({ id, attempt_count: 1, submitted_payload: { n: 7 } });
    expect(await agent.delta(id, { status: 'completed', progress: 1, result: { echoed: 7 } })).toEqual({
      accepted: 1,
      rejected: [],
    });
    expect(await readBack(agent, id)).toMatchObject({ status: 'completed', result: { echoed: 7 } });
    return `completed by an epoch-less delta (legacy owner-only; the claim's claim_epoch ${claimed.claim_epoch} ignored)`;
  });
};

const progress: Scenario = (cell) => {
  const capability = `${cell.prefix}-progress`;
  return withAgents(cell, ['progress'], [capability], async (agent) => {
    const id = await submit(agent, capability);
    await agent.claim(capability);
    expect((await agent.delta(id, { progress: 0.5, progress_message: 'halfway' })).accepted).toBe(1);
    expect(await readBack(agent, id)).toMatchObject({
      status: 'working',
      progress: 0.5,
      progress_message: 'halfway',
    });
    expect((await agent.delta(id, { status: 'completed', result: {} })).accepted).toBe(1);
    return 'progress 0.5 "halfway" read back while working; delta epoch-less (owner-only)';
  });
};

const retry: Scenario = (cell) => {
  const capability = `${cell.prefix}-retry`;
  return withAgents(cell, ['retry'], [capability], async (agent) => {
    const id = await submit(agent, capability, { max_retries: 1 });
    expect(await agent.claim(capability)).toMatchObject({ id, attempt_count: 1 });
    // The 3.7 retry_on path: give the job back with the failure as reason.
    const released = await agent.release(id, 'upstream down');
    expect(released).toMatchObject({ status: 200, body: { status: 'working', attempt_count: 1 } });
    const again = await agent.claim(capability);
    expect(again).toMatchObject({ id, attempt_count: 2 });
    expect((await agent.delta(id, { status: 'completed', result: { attempt: 2 } })).accepted).toBe(1);
    expect(await readBack(agent, id)).toMatchObject({
      status: 'completed',
      result: { attempt: 2 },
      attempt_count: 2,
    });
    return `released owner-only (no claim_epoch); attempt 2 completed (claim_epoch ${again.claim_epoch} ignored)`;
  });
};

const cancel: Scenario = (cell) => {
  const capability = `${cell.prefix}-cancel`;
  return withAgents(cell, ['cancel'], [capability], async (agent) => {
    const id = await submit(agent, capability);
    await agent.claim(capability);
    expect((await agent.delta(id, { progress: 0.3 })).accepted).toBe(1);
    const cancelled = await agent.wire('POST', `/jobs/${id}/cancel`, { reason: 'skew test' });
    expect(cancelled).toMatchObject({
      status: 200,
      body: { status: 'cancelled', forwarded_to_instance_id: agent.id },
    });
    const after = settledFields(await observe(cell, id));
    expect(after).toMatchObject({ status: 'cancelled', result: null, progress: 0.3 });
    // The forward is best effort (async on both registries): give it a moment.
    const forward = await until('the cancel forward', () =>
      agent.forwards.find((f) => f.path === `/jobs/${id}/cancel`),
    ).catch(() => undefined);
    const write = await agent.delta(id, { progress: 0.9, progress_message: 'after cancel' });
    expect(write).toMatchObject({ accepted: 0, rejected: [{ id }] });
    const done = await agent.delta(id, { status: 'completed', result: { late: true } });
    expect(done).toMatchObject({ accepted: 0, rejected: [{ id }] });
    expect(settledFields(await observe(cell, id))).toEqual(after);
    const how = forward
      ? `cancel forward (POST {agent}/jobs/{id}/cancel, reason "${(forward.body as { reason?: string })?.reason}")`
      : 'no forward';
    return `learnt via ${how}; its next writes refused: ${write.rejected[0].reason}; job unchanged`;
  });
};

const supersession: Scenario = (cell) => {
  const other = `${cell.prefix}-supersede`;
  const same = `${cell.prefix}-supersede-same`;
  return withAgents(cell, ['stale-a', 'fresh-b'], [other, same], async (a, b) => {
    const lease = { max_duration: shortLeaseSeconds, max_retries: 1 };
    const toOther = await submit(a, other, lease);
    const toSame = await submit(a, same, lease);
    await a.claim(other);
    await a.claim(same);
    // A goes silent past its lease: both jobs are re-queued.
    await until(
      'both leases to lapse',
      async () =>
        (await observe(cell, toOther)).owner_instance_id === null &&
        (await observe(cell, toSame)).owner_instance_id === null,
      15_000,
    );
    // Another instance re-claims one and completes it; A re-claims the other itself.
    expect(await b.claim(other)).toMatchObject({ id: toOther, attempt_count: 2 });
    expect((await b.delta(toOther, { status: 'completed', result: { by: 'B' } })).accepted).toBe(1);
    const done = settledFields(await observe(cell, toOther));
    expect(await a.claim(same)).toMatchObject({ id: toSame, attempt_count: 2 });
    // A's stale first attempts write.
    const stale = await a.delta(toOther, { status: 'completed', result: { by: 'stale A' } });
    expect(stale).toMatchObject({ accepted: 0, rejected: [{ id: toOther }] });
    expect(settledFields(await observe(cell, toOther))).toEqual(done);
    const sameInstance = await a.delta(toSame, { progress: 0.4, progress_message: 'stale attempt' });
    const sameHow =
      sameInstance.accepted === 1
        ? "a same-instance re-claim is not told apart (the stale attempt's write was accepted)"
        : `even a same-instance stale write was refused: ${sameInstance.rejected[0]?.reason}`;
    return `legacy owner-only: stale write refused ${stale.rejected[0].reason} once another instance owns the job; ${sameHow}`;
  });
};

const keepAlive: Scenario = (cell) => {
  const kept = `${cell.prefix}-keepalive`;
  const lapsed = `${cell.prefix}-keepalive-none`;
  const silentMs = shortLeaseSeconds * 2_500;
  return withAgents(cell, ['keepalive'], [kept, lapsed], async (agent) => {
    const lease = { max_duration: shortLeaseSeconds, max_retries: 0 };
    const keptId = await submit(agent, kept, lease);
    const lapsedId = await submit(agent, lapsed, lease);
    await agent.claim(kept);
    await agent.claim(lapsed);
    // The handlers are silent; the client renews one job's lease with empty deltas, not the other's.
    const endAt = Date.now() + silentMs;
    while (Date.now() < endAt) {
      await sleep((shortLeaseSeconds * 1000) / 3);
      expect(await agent.delta(keptId)).toEqual({ accepted: 1, rejected: [] });
    }
    expect((await agent.delta(keptId, { status: 'completed', result: { slept: silentMs } })).accepted).toBe(
      1,
    );
    expect(await readBack(agent, keptId)).toMatchObject({
      status: 'completed',
      attempt_count: 1,
      result: { slept: silentMs },
    });
    const gone = await readBack(agent, lapsedId);
    expect(gone.owner_instance_id === agent.id && gone.status === 'working').toBe(false);
    return (
      `kept for ${silentMs / 1000} s on a ${shortLeaseSeconds} s lease by an empty epoch-less delta every ${(shortLeaseSeconds / 3).toFixed(1)} s ` +
      `(the 3.7 wire: a write renews); with none the lease lapses: ${gone.status}, "${gone.error}"`
    );
  });
};

export const rawScenarios: Record<ScenarioKey, Scenario> = {
  completion,
  progress,
  retry,
  cancel,
  supersession,
  'keep-alive': keepAlive,
};

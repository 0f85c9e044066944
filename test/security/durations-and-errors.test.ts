import { runRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromDatabaseError } from '../../apps/registry/src/errors.ts';
import { startTestRegistry, type TestRegistry } from '../support/registry-app.ts';

// Issue 18, item 5.
const db = useTestDatabase();
let r: TestRegistry;
beforeAll(async () => {
  // A stale timeout beyond what an int4 of seconds holds, as an older config check let through.
  r = await startTestRegistry(db.url, { sweep: { staleTimeoutMs: 3_000_000_000_000 } });
});
afterAll(async () => {
  await r.close();
});

describe('durations and failures do not take the registry down (issue 18)', () => {
  it('refuses --agent-timeout 30d at start with exit 2 and a clear message', async () => {
    const run = await runRegistry({
      databaseUrl: db.url,
      args: ['--agent-timeout', '30d'],
      timeoutMs: 30_000,
    });
    expect(run.code).toBe(2);
    expect(run.output).toContain(
      '--agent-timeout: must be at most 24d20h31m23s (2147483647 ms, the longest timer), got "30d"',
    );
  });

  it('lets each sweep phase fail alone: deadlines still expire when the stale phase cannot run', async () => {
    const id = (
      await r.call('POST', '/jobs', {
        capability: 'sweep-alone',
        submitted_by: 's',
        submitted_payload: {},
        total_deadline: Math.floor(Date.now() / 1000) - 10,
      })
    ).body.id;
    await expect(r.sweeper.expireStale()).rejects.toThrow();
    const counts = await r.sweeper.runOnce();
    expect(counts.deadlineFailed).toBe(1);
    expect((await r.call('GET', `/jobs/${id}`)).body.status).toBe('failed');
  });

  it('does not send the database address in a 503 body', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:5432'), { code: 'ECONNREFUSED' });
    const mapped = fromDatabaseError(err);
    expect(mapped?.status).toBe(503);
    expect(mapped?.body().error).toBe('database unavailable (ECONNREFUSED)');
    expect(JSON.stringify(mapped?.body())).not.toContain('10.0.0.7');
  });
});

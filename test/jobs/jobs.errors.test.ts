import { useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRegistry, type TestRegistry } from '../support/registry-app.ts';

const db = useTestDatabase();
let r: TestRegistry;
let jobId: string;
beforeAll(async () => {
  r = await startTestRegistry(db.url, { maxBodyBytes: 64 * 1024 });
  jobId = (
    await r.call('POST', '/jobs', { capability: 'err', submitted_by: 's', submitted_payload: { keep: 1 } })
  ).body.id;
  await r.call('POST', '/jobs/claim', { capability: 'err', instance_id: 'w1' });
});
afterAll(async () => {
  await r.close();
});

const snapshot = async () => r.sql`select * from jobs order by id`.then((rows) => JSON.stringify(rows));
const eventsSnapshot = async () =>
  r.sql`select * from job_events order by id`.then((rows) => JSON.stringify(rows));

type Case = [method: string, path: () => string, body: unknown, status: number, error: string | RegExp];
/** Bodies that name the job are built when the test runs (the id exists only then). */
const lazy = (f: () => unknown) => ({ lazy: f });
const big = 'x'.repeat(70 * 1024);
const cases: Case[] = [
  // POST /jobs, in MCP Mesh's validation order.
  ['POST', () => '/jobs', { submitted_by: 's', submitted_payload: {} }, 400, 'capability is required'],
  [
    'POST',
    () => '/jobs',
    { capability: '  ', submitted_by: 's', submitted_payload: {} },
    400,
    'capability is required',
  ],
  ['POST', () => '/jobs', { capability: 'c', submitted_payload: {} }, 400, 'submitted_by is required'],
  ['POST', () => '/jobs', { capability: 'c', submitted_by: 's' }, 400, 'submitted_payload is required'],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: null },
    400,
    'submitted_payload is required',
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: {}, max_retries: -1 },
    400,
    'max_retries must be non-negative',
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: {}, max_duration: 0 },
    400,
    'max_duration must be positive',
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: [1, 2] },
    400,
    /^Invalid JSON payload: submitted_payload/,
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 7, submitted_by: 's', submitted_payload: {} },
    400,
    /^Invalid JSON payload: capability/,
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: {}, max_retries: 1.5 },
    400,
    /^Invalid JSON payload: max_retries/,
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: {}, max_retries: 1e12 },
    400,
    'max_retries must be at most 2147483647',
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: {}, max_duration: 2 ** 40 },
    400,
    /max_duration must be at most/,
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: {}, total_deadline: 1e15 },
    400,
    /total_deadline must be Unix seconds/,
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: {}, total_deadline: -5 },
    400,
    /total_deadline must be Unix seconds/,
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c\u0000', submitted_by: 's', submitted_payload: {} },
    400,
    'capability must not contain NUL characters',
  ],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: { bad: 'a\u0000b' } },
    400,
    /^invalid value: /,
  ],
  ['POST', () => '/jobs', '{"capability":', 400, /^Invalid JSON payload: /],
  ['POST', () => '/jobs', '[]', 400, 'Invalid JSON payload: the body must be a JSON object'],
  ['POST', () => '/jobs', '', 400, /^Invalid JSON payload: /],
  [
    'POST',
    () => '/jobs',
    { capability: 'c', submitted_by: 's', submitted_payload: { big } },
    413,
    /request body exceeds/,
  ],
  // claim
  ['POST', () => '/jobs/claim', { capability: 'err' }, 400, 'instance_id is required'],
  ['POST', () => '/jobs/claim', { instance_id: 'w' }, 400, 'capability is required'],
  [
    'POST',
    () => '/jobs/claim',
    { capability: 'err', instance_id: 'w', max_jobs: 'many' },
    400,
    /^Invalid JSON payload: max_jobs/,
  ],
  // batch
  ['POST', () => '/jobs/batch', { instance_id: 'w1', deltas: [] }, 400, 'deltas must not be empty'],
  ['POST', () => '/jobs/batch', { deltas: [{ id: 'x' }] }, 400, 'instance_id is required'],
  [
    'POST',
    () => '/jobs/batch',
    { instance_id: 'w1', deltas: [{ progress: 0.1 }] },
    400,
    'every delta requires a non-empty id',
  ],
  [
    'POST',
    () => '/jobs/batch',
    lazy(() => ({ instance_id: 'w1', deltas: [{ id: jobId, progress: 'half' }] })),
    400,
    /^Invalid JSON payload: deltas.0.progress/,
  ],
  [
    'POST',
    () => '/jobs/batch',
    lazy(() => ({ instance_id: 'w1', deltas: [{ id: jobId, claim_epoch: 'one' }] })),
    400,
    /^Invalid JSON payload: deltas.0.claim_epoch/,
  ],
  [
    'POST',
    () => '/jobs/batch',
    lazy(() => ({ instance_id: 'w1', deltas: [{ id: jobId, recv_cursor: { a: 1.5 } }] })),
    400,
    /^Invalid JSON payload: deltas.0.recv_cursor/,
  ],
  ['POST', () => '/jobs/batch', { instance_id: 'w1', deltas: 'all' }, 400, /^Invalid JSON payload: deltas/],
  // reads
  [
    'GET',
    () => '/jobs/00000000-0000-0000-0000-000000000000',
    undefined,
    404,
    'job not found: 00000000-0000-0000-0000-000000000000',
  ],
  ['GET', () => '/jobs/not-a-uuid', undefined, 404, 'job not found: not-a-uuid'],
  ['GET', () => '/jobs/claim', undefined, 404, 'job not found: claim'],
  ['GET', () => `/jobs/${jobId}/events?after=abc`, undefined, 400, /Invalid format for parameter after/],
  [
    'GET',
    () => `/jobs/${jobId}/events?claim_epoch=abc&instance_id=w1`,
    undefined,
    400,
    /Invalid format for parameter claim_epoch/,
  ],
  ['GET', () => '/jobs/nope/events', undefined, 404, 'job not found: nope'],
  // owner paths
  ['POST', () => '/jobs/not-a-uuid/release', { instance_id: 'w1' }, 404, 'job not found: not-a-uuid'],
  ['POST', () => `/jobs/${jobId}/release`, '', 400, /^Invalid JSON payload/],
  ['POST', () => `/jobs/${jobId}/release`, { instance_id: 'w1', claim_epoch: -3 }, 409, 'claim_superseded'],
  ['POST', () => '/jobs/not-a-uuid/cancel', undefined, 404, 'job not found: not-a-uuid'],
  ['POST', () => '/jobs/not-a-uuid/reclaim', undefined, 404, 'job not found: not-a-uuid'],
  [
    'POST',
    () => `/jobs/${jobId}/events`,
    { type: 'x', trace_context: 'nope' },
    400,
    /^Invalid JSON payload: trace_context/,
  ],
  ['POST', () => `/jobs/${jobId}/events`, { type: 'x', payload: 'a\u0000b' }, 400, /^invalid value: /],
  ['POST', () => '/jobs/leases', { instance_id: 'w1', leases: [] }, 400, 'leases must not be empty'],
  [
    'POST',
    () => '/jobs/leases',
    lazy(() => ({ instance_id: 'w1', leases: [{ id: jobId }] })),
    400,
    /requires claim_epoch/,
  ],
];

describe('bad input gets a 4xx with the wire error body, never a 5xx, and changes nothing', () => {
  it.each(cases.map((c, i) => [i, ...c] as const))(
    '#%i %s %s',
    async (_i, method, path, body, status, error) => {
      const before = await snapshot();
      const beforeEvents = await eventsSnapshot();
      const payload =
        body && typeof body === 'object' && 'lazy' in body ? (body as { lazy: () => unknown }).lazy() : body;
      const res = await r.call(method, path(), payload);
      expect(res.status).toBe(status);
      expect(res.body).toEqual({
        error: expect.any(String),
        timestamp: expect.any(String),
        code: expect.any(String),
      });
      if (typeof error === 'string') expect(res.body.error).toBe(error);
      else expect(res.body.error).toMatch(error);
      expect(new Date(res.body.timestamp).getTime()).not.toBeNaN();
      expect(await snapshot()).toBe(before);
      expect(await eventsSnapshot()).toBe(beforeEvents);
    },
  );

  it('still has the job it started with, untouched', async () => {
    expect((await r.call('GET', `/jobs/${jobId}`)).body).toMatchObject({
      submitted_payload: { keep: 1 },
      owner_instance_id: 'w1',
      claim_epoch: 1,
      status: 'working',
    });
  });
});

import { useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRegistry, type TestRegistry } from '../support/registry-app.ts';

// Issue 16, item 5: each role's routes close only when that role has tokens,
// so a registry with agent tokens alone keeps its clients as they were, and
// one with no tokens at all is MCP Mesh 3.7's open main port.
const db = useTestDatabase();
let none: TestRegistry;
let agentsOnly: TestRegistry;
let clientsOnly: TestRegistry;
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const claim = { capability: 'roles', instance_id: 'w-1' };
const job = { capability: 'roles', submitted_by: 't', submitted_payload: {} };

beforeAll(async () => {
  none = await startTestRegistry(db.url);
  agentsOnly = await startTestRegistry(db.url, { tokens: { agent: ['agent-secret-1'] } });
  clientsOnly = await startTestRegistry(db.url, { tokens: { client: ['client-secret-1'] } });
});
afterAll(async () => {
  await Promise.all([none, agentsOnly, clientsOnly].map((r) => r?.close()));
});

describe('token roles close only their own routes', () => {
  it('no tokens: every route is open, as in MCP Mesh 3.7', async () => {
    expect((await none.call('POST', '/jobs', job)).status).toBe(201);
    expect((await none.call('POST', '/jobs/claim', claim)).status).toBe(200);
    expect((await none.call('GET', '/jobs')).status).toBe(200);
    expect((await none.call('GET', '/agents')).status).toBe(200);
  });

  it('agent tokens only: agent routes closed; client and shared routes open', async () => {
    const { body } = await agentsOnly.call('POST', '/jobs', job);
    expect((await agentsOnly.call('POST', '/jobs/claim', claim)).status).toBe(401);
    expect((await agentsOnly.call('POST', '/jobs/claim', claim, bearer('agent-secret-1'))).status).toBe(200);
    expect((await agentsOnly.call('GET', `/jobs/${body.id}`)).status).toBe(200);
    expect((await agentsOnly.call('GET', `/jobs/${body.id}/events`)).status).toBe(200);
    expect((await agentsOnly.call('GET', '/agents')).status).toBe(200);
  });

  it('client tokens only: client routes closed (the job list too, with no admin token); agent routes open', async () => {
    expect((await clientsOnly.call('POST', '/jobs', job)).status).toBe(401);
    expect((await clientsOnly.call('GET', '/jobs')).status).toBe(401);
    expect((await clientsOnly.call('GET', '/jobs', undefined, bearer('client-secret-1'))).status).toBe(200);
    const created = await clientsOnly.call('POST', '/jobs', job, bearer('client-secret-1'));
    expect(created.status).toBe(201);
    expect((await clientsOnly.call('POST', '/jobs/claim', claim)).status).toBe(200);
    expect((await clientsOnly.call('POST', `/jobs/${created.body.id}/cancel`, {})).status).toBe(401);
  });

  it('the header is read strictly: scheme, one token, nothing after it', async () => {
    for (const header of ['agent-secret-1', 'Basic agent-secret-1', 'Bearer agent-secret-1 x', 'Bearer  ']) {
      expect((await agentsOnly.call('POST', '/jobs/claim', claim, { authorization: header })).status).toBe(
        401,
      );
    }
    for (const header of ['bearer agent-secret-1', 'Bearer   agent-secret-1 ']) {
      expect((await agentsOnly.call('POST', '/jobs/claim', claim, { authorization: header })).status).toBe(
        200,
      );
    }
  });
});

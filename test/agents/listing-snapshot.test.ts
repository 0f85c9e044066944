import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentListing, agentsJson } from '../../apps/registry/src/services/agent-listing.ts';
import { ProviderSnapshot } from '../../apps/registry/src/services/provider-snapshot.ts';

/**
 * `GET /agents` keeps every provider and its resolutions between listings
 * while a fingerprint read from the database says nothing changed
 * (services/provider-snapshot.ts). Every change below is made where the
 * listing replica cannot see it happen (another replica, or plain SQL as a
 * writer that knows nothing of the cache), and the very next listing must
 * show it: no poll, no wait.
 */
const db = useTestDatabase();
let lister: RegistryProcess;
let writer: RegistryProcess;
let sql: postgres.Sql;

beforeAll(async () => {
  [lister, writer] = await Promise.all([
    spawnRegistry({ databaseUrl: db.url, replicaId: 'lister' }),
    spawnRegistry({ databaseUrl: db.url, replicaId: 'writer' }),
  ]);
  sql = postgres(db.url, { max: 1, onnotice: () => {} });
}, 60_000);

afterAll(async () => {
  await sql?.end();
  await Promise.all([lister?.stop(), writer?.stop()]);
});

const register = async (body: Record<string, unknown>) => {
  const res = await fetch(`${writer.url}/heartbeat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ runtime: 'typescript', version: '1.0.0', ...body }),
  });
  expect(res.status).toBe(200);
};

interface Listed {
  id: string;
  status: string;
  endpoint: string;
  capabilities: { name: string; available: boolean }[] | null;
  dependency_resolutions:
    | { capability: string; status: string; provider_agent_id?: string; endpoint?: string }[]
    | null;
}

/** The lister's `GET /agents`, as sent (`null` when empty). */
const listed = async () => {
  const res = await fetch(`${lister.url}/agents`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { agents: Listed[] | null }).agents;
};

const listing = async () => new Map(((await listed()) ?? []).map((a) => [a.id, a]));

const consumerSees = async () => (await listing()).get('consumer')?.dependency_resolutions?.[0];

describe('GET /agents between listings (provider snapshot)', () => {
  it('shows every change made elsewhere in the very next listing', async () => {
    await register({
      agent_id: 'weather-a',
      http_host: '127.0.0.1',
      http_port: 9001,
      tools: [{ function_name: 'forecast', capability: 'weather', version: '1.0.0' }],
    });
    await register({
      agent_id: 'consumer',
      tools: [{ function_name: 'report', capability: 'report', dependencies: [{ capability: 'weather' }] }],
    });
    expect(await consumerSees()).toMatchObject({ status: 'available', provider_agent_id: 'weather-a' });
    // Listed again with nothing changed: the same answer.
    expect(await consumerSees()).toMatchObject({ status: 'available', provider_agent_id: 'weather-a' });

    // A newer provider registers on the other replica: it wins at once.
    await register({
      agent_id: 'weather-b',
      http_host: '127.0.0.1',
      http_port: 9002,
      tools: [{ function_name: 'forecast', capability: 'weather', version: '2.0.0' }],
    });
    expect(await consumerSees()).toMatchObject({
      provider_agent_id: 'weather-b',
      endpoint: 'http://127.0.0.1:9002',
    });

    // It unregisters (turns unhealthy) on the other replica: the older one wins again.
    expect((await fetch(`${writer.url}/agents/weather-b`, { method: 'DELETE' })).status).toBe(204);
    const afterDelete = await listing();
    expect(afterDelete.get('weather-b')?.status).toBe('unhealthy');
    expect(afterDelete.get('weather-b')?.capabilities?.[0]?.available).toBe(false);
    expect(afterDelete.get('consumer')?.dependency_resolutions?.[0]).toMatchObject({
      provider_agent_id: 'weather-a',
    });

    // A writer that knows nothing of the cache (plain SQL, as an older release
    // writes): a new endpoint, then the capability row gone.
    await sql`update agents set http_port = 9009 where agent_id = 'weather-a'`;
    expect(await consumerSees()).toMatchObject({
      provider_agent_id: 'weather-a',
      endpoint: 'http://127.0.0.1:9009',
    });
    await sql`update agent_capabilities set version = '1.5.0' where agent_id = 'weather-a'`;
    await sql`update agents set status = 'healthy' where agent_id = 'weather-b'`;
    await sql`update agent_capabilities set version = '1.0.0' where agent_id = 'weather-b'`;
    // weather-a at 1.5.0 now beats weather-b at 1.0.0.
    expect(await consumerSees()).toMatchObject({ provider_agent_id: 'weather-a' });
    await sql`delete from agent_capabilities where agent_id = 'weather-a'`;
    expect(await consumerSees()).toMatchObject({ provider_agent_id: 'weather-b' });
    await sql`delete from agent_capabilities where agent_id = 'weather-b'`;
    expect((await consumerSees())?.status).not.toBe('available');
  });

  it('is read once and kept while unchanged: heartbeats do not change it, a registration does', async () => {
    const snapshot = new ProviderSnapshot(sql);
    const first = await snapshot.get();
    expect(await snapshot.get()).toBe(first);
    // Heartbeats only move timestamps, which the fingerprint does not read.
    for (let i = 0; i < 3; i++) {
      expect((await fetch(`${writer.url}/heartbeat/consumer`, { method: 'HEAD' })).status).toBeLessThan(300);
    }
    expect(await snapshot.get()).toBe(first);
    await register({
      agent_id: 'weather-c',
      tools: [{ function_name: 'forecast', capability: 'weather', version: '3.0.0' }],
    });
    const second = await snapshot.get();
    expect(second).not.toBe(first);
    expect(second.byAgent.get('weather-c')?.map((p) => p.version)).toEqual(['3.0.0']);
    expect(await snapshot.get()).toBe(second);
  });

  it('keeps each description only while its row and the providers are unchanged: the next listing equals a cold one', async () => {
    // The lister keeps every listed agent's description between listings
    // (services/agent-listing.ts); a listing made with nothing kept must say
    // the same, after every kind of change, made where the lister cannot see it.
    const cold = async () => {
      const { agents } = await new AgentListing(sql, new ProviderSnapshot(sql)).list();
      return JSON.parse(agentsJson(agents)) as Listed[];
    };
    const same = async (why: string) => {
      const seen = await listed();
      expect(seen, why).toEqual(await cold());
      return new Map((seen ?? []).map((a) => [a.id, a as Listed & Record<string, unknown>]));
    };
    await register({
      agent_id: 'sky',
      http_host: '127.0.0.1',
      http_port: 9100,
      tools: [{ function_name: 'clouds', capability: 'sky', version: '1.0.0' }],
    });
    await register({
      agent_id: 'painter',
      tools: [{ function_name: 'paint', capability: 'painting', dependencies: [{ capability: 'sky' }] }],
    });
    await same('registered');
    const first = await same('listed again, nothing changed');

    // A heartbeat moves last_seen only.
    await new Promise((done) => setTimeout(done, 5));
    expect((await fetch(`${writer.url}/heartbeat/painter`, { method: 'HEAD' })).status).toBeLessThan(300);
    const beaten = await same('after a heartbeat');
    expect(beaten.get('painter')?.last_seen).not.toBe(first.get('painter')?.last_seen);
    const [row] = await sql<{ updated_at: Date }[]>`select updated_at from agents where agent_id = 'painter'`;
    expect(beaten.get('painter')?.last_seen).toBe(row?.updated_at.toISOString());

    // Plain SQL on the row's own columns, as an older release or an operator writes.
    await sql`update agents set description = 'paints skies' where agent_id = 'painter'`;
    expect((await same('a description changed')).get('painter')?.description).toBe('paints skies');
    await sql`update agents set total_dependencies = 7, dependencies_resolved = 3, sdk_version = '9.9.9' where agent_id = 'painter'`;
    expect((await same('counts and SDK version changed')).get('painter')).toMatchObject({
      total_dependencies: 7,
      dependencies_resolved: 3,
      sdk_version: '9.9.9',
    });
    // The stored resolution (what was available at registration) decides
    // between `unavailable` and `unresolved` once the provider is gone.
    await sql`update agents set registration = jsonb_set(registration, '{resolved}', '{"paint": [{"status": "available"}]}')
              where agent_id = 'painter'`;
    await sql`update agents set status = 'unhealthy' where agent_id = 'sky'`;
    const gone = await same('the provider unhealthy');
    expect(gone.get('painter')?.dependency_resolutions?.[0]?.status).toBe('unavailable');
    expect(gone.get('sky')?.capabilities?.[0]?.available).toBe(false);
    await sql`update agents set registration = jsonb_set(registration, '{resolved}', '{}') where agent_id = 'painter'`;
    expect((await same('no stored resolution')).get('painter')?.dependency_resolutions?.[0]?.status).toBe(
      'unresolved',
    );
    // The provider back on another endpoint.
    await sql`update agents set status = 'healthy', http_port = 9101 where agent_id = 'sky'`;
    expect((await same('the provider back')).get('painter')?.dependency_resolutions?.[0]).toMatchObject({
      status: 'available',
      endpoint: 'http://127.0.0.1:9101',
    });
  });
});

import { headers } from '@mesh/protocol';
import { RegistryClient } from '@mesh/sdk';
import { installedRelease, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { describe, expect, it } from 'vitest';

/**
 * A draining replica hands out no claims. Since 0.2.0 it says so
 * (`X-Mesh-Draining`), and an SDK client that knows several replicas claims
 * at the next one at once, instead of backing off on an empty answer while
 * the other replicas have work (no dispatch pause during a rolling upgrade).
 */
describe('claims while the preferred replica drains', () => {
  const db = useTestDatabase();

  it('go to the next registry URL at once, and stay there', async () => {
    const [a, b] = await Promise.all([
      spawnRegistry({ databaseUrl: db.url, replicaId: 'fo-a' }),
      spawnRegistry({ databaseUrl: db.url, replicaId: 'fo-b' }),
    ]);
    const drained = await fetch(`${a.url}/admin/drain`, { method: 'POST' });
    expect(drained.status).toBe(200);
    const raw = await fetch(`${a.url}/jobs/claim`, {
      method: 'POST',
      body: JSON.stringify({ capability: 'fo', instance_id: 'raw' }),
    });
    expect(raw.headers.get(headers.draining)).toBe('true');
    expect(await raw.json()).toEqual({ claimed: [] });

    const client = new RegistryClient({ urls: [a.url, b.url] });
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      ids.push((await client.submit({ capability: 'fo', submitted_by: 't', submitted_payload: { i } })).id);
    }
    const first = await client.claim('fo', 'w1');
    expect(first.map((j) => j.id)).toEqual([ids[0]]);
    const second = await client.claim('fo', 'w1');
    expect(second.map((j) => j.id)).toEqual([ids[1]]);
    const claimedAt = await Promise.all(
      [a, b].map(async (r) => {
        const text = await (await fetch(`${r.url}/metrics`)).text();
        return Number(/mesh_claims_total\{outcome="claimed"\} (\d+)/.exec(text)?.[1] ?? 0);
      }),
    );
    expect(claimedAt).toEqual([0, 2]);

    // A single-URL client has nowhere else to go: an empty answer, no error.
    expect(await new RegistryClient({ urls: [a.url] }).claim('fo', 'w2')).toEqual([]);
  });

  it('that does not say so (released 0.1.0): the next claim goes to the next URL', async () => {
    const old = await installedRelease('0.1.0');
    const [a, b] = await Promise.all([
      spawnRegistry({ bin: old.registryBin, databaseUrl: db.url, replicaId: 'fo-old-a' }),
      spawnRegistry({ bin: old.registryBin, databaseUrl: db.url, replicaId: 'fo-old-b' }),
    ]);
    expect((await fetch(`${a.url}/admin/drain`, { method: 'POST' })).status).toBe(200);
    const raw = await fetch(`${a.url}/jobs/claim`, {
      method: 'POST',
      body: JSON.stringify({ capability: 'fo-old', instance_id: 'raw' }),
    });
    expect(raw.headers.get(headers.draining)).toBeNull();
    const client = new RegistryClient({ urls: [a.url, b.url] });
    const { id } = await client.submit({ capability: 'fo-old', submitted_by: 't', submitted_payload: {} });
    expect(await client.claim('fo-old', 'w1')).toEqual([]); // the draining replica: nothing
    expect((await client.claim('fo-old', 'w1')).map((j) => j.id)).toEqual([id]); // the next one
  }, 300_000);
});

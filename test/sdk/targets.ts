import { RegistryClient } from '@mesh/sdk';
import { adminUrl, createDatabase, spawnRegistry, startMcpRegistry, withDatabase } from '@mesh/testkit';
import { afterAll } from 'vitest';

export { until } from '../support/until.ts';

/**
 * The registries every SDK scenario runs against: ours, and the real MCP Mesh
 * registry 3.7.1 (an older registry: no extensions, the SDK falls back to the
 * 3.7 wire). Each on a fresh database of this run's PostgreSQL.
 */
export const targets = [
  {
    name: 'ours',
    async start() {
      const db = await createDatabase(adminUrl());
      const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'sdk' });
      return {
        url: r.url,
        stop: async () => {
          await r.stop();
          await db.drop();
        },
      };
    },
  },
  {
    name: 'mcp-mesh-3.7.1',
    async start() {
      const db = await createDatabase(adminUrl(), { migrated: false });
      const r = await startMcpRegistry(withDatabase(adminUrl(), db.name));
      return {
        url: r.url,
        stop: async () => {
          await r.stop();
          await db.drop();
        },
      };
    },
  },
] as const;

export type Target = (typeof targets)[number];

const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const s of stops.splice(0)) await s();
});

/**
 * Starts `target` when the describe block is collected; await `ready` in each
 * test. Stopped after the file.
 */
export function useTarget(target: Target): { ready: Promise<void>; client: RegistryClient; url: string } {
  const ref = { client: undefined as unknown as RegistryClient, url: '' } as {
    ready: Promise<void>;
    client: RegistryClient;
    url: string;
  };
  ref.ready = (async () => {
    const started = await target.start();
    stops.push(started.stop);
    ref.url = started.url;
    ref.client = new RegistryClient({ urls: [started.url] });
  })();
  return ref;
}

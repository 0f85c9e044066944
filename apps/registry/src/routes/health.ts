import { apiVersion, headers, serviceName } from '@mesh/protocol';
import { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';

/** Liveness (`/health`, MCP Mesh shape + ours), readiness (`/ready`) and `/`. */
export const healthRoutes = new Hono<AppEnv>()
  .get('/health', (c) => {
    const { identity, features } = c.get('deps');
    // Hono answers HEAD with the GET route; MCP Mesh's HEAD carries headers only.
    if (c.req.method === 'HEAD') {
      return c.body(null, 200, {
        'Content-Type': 'application/json',
        [headers.healthStatus]: 'healthy',
        [headers.serviceVersion]: identity.version,
        [headers.uptimeSeconds]: String(identity.uptimeSeconds()),
        [headers.replicaId]: identity.replicaId,
        [headers.bootId]: identity.bootId,
      });
    }
    return c.json({
      service: serviceName,
      status: 'healthy',
      timestamp: new Date().toISOString(),
      uptime_seconds: identity.uptimeSeconds(),
      version: identity.version,
      replica_id: identity.replicaId,
      boot_id: identity.bootId,
      api_version: apiVersion,
      schema_version: identity.schemaVersion,
      features: [...features],
      // A port, never a host: the caller reached this replica by some address and
      // adds the port to it (docs/operations.md, "Admin port and token").
      ...(identity.adminPort !== undefined ? { admin_port: identity.adminPort } : {}),
    });
  })
  .get('/ready', async (c) => {
    const { identity, readiness } = c.get('deps');
    const state = await readiness.check();
    const ready =
      state.database === 'ok' &&
      state.migrations === 'done' &&
      state.lifecycle === 'running' &&
      state.schema !== 'incompatible';
    return c.json(
      {
        status: ready ? 'ready' : 'not_ready',
        replica_id: identity.replicaId,
        boot_id: identity.bootId,
        checks: state,
      },
      ready ? 200 : 503,
    );
  })
  .get('/', (c) =>
    c.json({
      service: serviceName,
      status: 'running',
      version: c.get('deps').identity.version,
      endpoints: ['/health', '/heartbeat', '/agents'],
    }),
  );

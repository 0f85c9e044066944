import { z } from 'zod';

/** The `service` value MCP Mesh clients expect in `/health` and `/`. */
export const serviceName = 'mcp-mesh-registry';

/**
 * `GET /health`: MCP Mesh 3.7's five keys plus our extensions. A client must
 * treat every extension as optional: MCP Mesh answers with the first five only
 * (and `version` "1.0.0").
 */
export const healthSchema = z.object({
  service: z.string(),
  status: z.string(),
  timestamp: z.string(),
  uptime_seconds: z.number().int(),
  version: z.string(),
  replica_id: z.string().optional(),
  boot_id: z.string().optional(),
  api_version: z.number().int().optional(),
  schema_version: z.number().int().optional(),
  features: z.array(z.string()).optional(),
  /**
   * Ours since 0.2.0: the port of the replica's admin listener (`/admin/*`,
   * force reclaim), when it has one and does not hide it
   * (`--advertise-admin-port false`). A port only: the admin URL is the
   * address the caller used with this port.
   */
  admin_port: z.number().int().optional(),
});
export type Health = z.infer<typeof healthSchema>;

/**
 * `GET /ready`: 200 when the database answers, migrations are done, the replica
 * is not shutting down, and no migration breaking for its release was applied
 * under it (`schema`, with the `reason`; absent from registries without the schema guard, such as MCP Mesh).
 */
export const readySchema = z.object({
  status: z.enum(['ready', 'not_ready']),
  replica_id: z.string(),
  boot_id: z.string(),
  checks: z.object({
    database: z.enum(['ok', 'unreachable']),
    migrations: z.enum(['done', 'pending']),
    lifecycle: z.enum(['running', 'shutting_down']),
    schema: z.enum(['compatible', 'incompatible']).optional(),
    reason: z.string().optional(),
  }),
});
export type Ready = z.infer<typeof readySchema>;

/** `GET /`: MCP Mesh 3.7's root document. */
export const rootSchema = z.object({
  service: z.string(),
  status: z.string(),
  version: z.string(),
  endpoints: z.array(z.string()),
});
export type Root = z.infer<typeof rootSchema>;

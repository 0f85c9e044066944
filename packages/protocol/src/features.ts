/**
 * Features a registry advertises in `/health` → `features`. Clients use them to
 * decide which extensions they may use; a registry that lists none (MCP Mesh
 * 3.7.1) gets the 3.7 wire only. Later releases append, never rename.
 */
export const features = {
  /** `/health` carries `replica_id` and `boot_id`; `/ready` exists. */
  replicaIdentity: 'replica-identity',
  /** Schema migrations are versioned and checked at boot. */
  schemaVersioning: 'schema-versioning',
} as const;

export type Feature = (typeof features)[keyof typeof features];

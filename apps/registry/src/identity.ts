/**
 * What this process is and whether it can serve: leaf types that the app, the
 * routes and the services all name, kept apart so none of them imports the
 * app (no import cycle).
 */

/** Who this process is: reported by `/health` and recorded in the database. */
export interface Identity {
  replicaId: string;
  /** A new UUID at every start. */
  bootId: string;
  version: string;
  schemaVersion: number;
  uptimeSeconds(): number;
  /**
   * The admin listener's port, when there is one and `--advertise-admin-port`
   * allows saying it: `/health` carries it as `admin_port`.
   */
  adminPort?: number;
}

/** What `/ready` reports (server.ts builds it; routes/health.ts answers it). */
export interface Readiness {
  check(): Promise<{
    database: 'ok' | 'unreachable';
    migrations: 'done' | 'pending';
    lifecycle: 'running' | 'shutting_down';
    /** `incompatible` once a migration breaking for this release was applied under it. */
    schema?: 'compatible' | 'incompatible';
    reason?: string;
  }>;
}

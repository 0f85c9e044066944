import postgres from 'postgres';

export interface DbOptions {
  /** Pool size. */
  max?: number;
  connectTimeoutSeconds?: number;
  applicationName?: string;
  /** More server settings for every connection (e.g. `plan_cache_mode` in tests). */
  settings?: Record<string, string>;
}

/**
 * The registry's postgres.js pool. Statements are written in SQL (STYLE.md 5);
 * drizzle owns the schema and migrations. (drizzle's postgres-js driver would
 * rewrite this client's JSON and timestamp serializers, so it is not wrapped.)
 */
export function createDb(databaseUrl: string, options: DbOptions = {}) {
  const sql = postgres(databaseUrl, {
    max: options.max ?? 20,
    connect_timeout: options.connectTimeoutSeconds ?? 10,
    idle_timeout: 60,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? 'mesh-registry', ...options.settings },
    // int8 as a JS number: epochs, sequence numbers and counts stay far below 2^53.
    types: {
      bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) },
    },
  });
  return { sql };
}

export type Sql = postgres.Sql;

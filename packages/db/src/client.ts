import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import * as schema from './schema.ts';

export interface DbOptions {
  /** Pool size. */
  max?: number;
  connectTimeoutSeconds?: number;
  applicationName?: string;
}

/** A postgres.js pool and a drizzle handle over it. */
export function createDb(databaseUrl: string, options: DbOptions = {}) {
  const sql = postgres(databaseUrl, {
    max: options.max ?? 20,
    connect_timeout: options.connectTimeoutSeconds ?? 10,
    idle_timeout: 60,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? 'mesh-registry' },
  });
  const db = drizzle(sql, { schema });
  return { sql, db };
}

export type Db = ReturnType<typeof createDb>['db'];
export type Sql = postgres.Sql;

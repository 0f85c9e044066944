import { createDb, type Sql } from '@mesh/db';
import type { Argv } from 'yargs';
import { ConnectionError, UsageError } from '../cli/errors.ts';

export interface DatabaseArgs {
  'database-url'?: string;
}

/** Adds `--database-url` (env `DATABASE_URL`), the one way meshctl reaches PostgreSQL. */
export function databaseOption<T>(
  y: Argv<T>,
  describe = 'PostgreSQL URL of the registry database [env: DATABASE_URL]',
) {
  return y.option('database-url', { type: 'string', describe, group: 'Database:' }) as Argv<T & DatabaseArgs>;
}

/** `postgres://user:***@host:5432/db`: a URL safe to print. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable URL>';
  }
}

/** The database URL from `--database-url` or `DATABASE_URL`; undefined when neither is set. */
export function databaseUrlFrom(
  args: DatabaseArgs,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const raw = (args['database-url'] ?? env.DATABASE_URL ?? '').trim();
  if (!raw) return undefined;
  const what = args['database-url'] ? '--database-url' : 'DATABASE_URL';
  let ok = /^postgres(ql)?:\/\//.test(raw);
  if (ok) {
    try {
      new URL(raw);
    } catch {
      ok = false;
    }
  }
  if (!ok) {
    throw new UsageError(
      `${what} must be a PostgreSQL URL (postgres://user:password@host:5432/database), got ${redactUrl(raw)}`,
    );
  }
  return raw;
}

/** Like {@link databaseUrlFrom}, but a missing URL is a usage error (exit 2). */
export function requireDatabaseUrl(args: DatabaseArgs, env: NodeJS.ProcessEnv = process.env): string {
  const url = databaseUrlFrom(args, env);
  if (!url) {
    throw new UsageError(
      'no database given: this command talks to PostgreSQL directly',
      'Pass --database-url postgres://user:password@host:5432/mesh or set DATABASE_URL (the registry uses the same variable).',
    );
  }
  return url;
}

/** One line for a PostgreSQL or network error. */
export function describeDbError(err: unknown): string {
  const e = err as { code?: string; message?: string; errno?: string };
  const code = e?.code ?? e?.errno;
  const msg = e?.message ?? String(err);
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}

export interface Database {
  sql: Sql;
  url: string;
  close(): Promise<void>;
}

/**
 * Opens a small pool and makes sure the server answers: a failure to connect
 * (refused, timeout, authentication, no such database) is a
 * {@link ConnectionError} (exit 2) naming the redacted URL.
 */
export async function openDatabase(url: string, { timeoutSeconds = 10 } = {}): Promise<Database> {
  const { sql } = createDb(url, {
    max: 2,
    connectTimeoutSeconds: Math.max(1, Math.ceil(timeoutSeconds)),
    applicationName: 'meshctl',
  });
  const close = () => sql.end({ timeout: 5 }).catch(() => {});
  try {
    await sql`select 1`;
  } catch (err) {
    await close();
    throw new ConnectionError(
      `cannot reach the database at ${redactUrl(url)}: ${describeDbError(err)}`,
      'Is PostgreSQL running, and are --database-url / DATABASE_URL right?',
    );
  }
  return { sql, url, close };
}

/** Opens the database, runs `fn`, always closes it. */
export async function usingDatabase<T>(
  url: string,
  fn: (db: Database) => Promise<T>,
  options?: { timeoutSeconds?: number },
): Promise<T> {
  const db = await openDatabase(url, options);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

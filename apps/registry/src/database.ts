import postgres from 'postgres';

/** `mesh-registry`'s exit codes (README, --help). */
export const exitCodes = {
  stopped: 0,
  /** Could not start: database unreachable, port in use, migration lock timeout. */
  startFailed: 1,
  /** Invalid configuration or usage. */
  usage: 2,
  /** The database holds a migration that is breaking for this release: run a newer one. */
  schemaTooNew: 3,
} as const;

/** The database could not be used at start; the message says why, for people. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
  constructor(
    message: string,
    readonly exitCode: number = exitCodes.startFailed,
  ) {
    super(message);
  }
}

/** `host:port/db` of a URL, without credentials, for messages. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}

// Errors no amount of waiting fixes.
const fatalCodes: Record<string, string> = {
  '28P01': 'password authentication failed',
  '28000': 'authentication rejected (pg_hba.conf or no such role)',
  '3D000': 'the database does not exist',
  '42501': 'permission denied',
};

/**
 * Waits until PostgreSQL answers `select 1`, up to `timeoutMs`, retrying
 * transient failures (refused, unreachable, starting up). Fails fast on errors
 * that retrying cannot fix, always with a message that names the server.
 */
export async function waitForDatabase(
  url: string,
  timeoutMs: number,
  onRetry?: (why: string) => void,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (let attempt = 0; ; attempt++) {
    const remaining = deadline - Date.now();
    const sql = postgres(url, {
      max: 1,
      onnotice: () => {},
      connect_timeout: Math.max(1, Math.min(5, Math.ceil(remaining / 1000))),
      connection: { application_name: 'mesh-registry:probe' },
    });
    try {
      await sql`select 1`;
      return;
    } catch (err) {
      const e = err as { code?: string; message?: string };
      const fatal = e.code ? fatalCodes[e.code] : undefined;
      if (fatal)
        throw new StartupError(`cannot use PostgreSQL at ${describeUrl(url)}: ${fatal} (${e.message})`);
      last = e.code === 'ECONNREFUSED' ? 'connection refused' : (e.message ?? String(err));
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
    if (Date.now() + 250 >= deadline) break;
    onRetry?.(last);
    await new Promise((r) =>
      setTimeout(r, Math.min(2_000, 250 * 2 ** attempt, Math.max(0, deadline - Date.now()))),
    );
  }
  throw new StartupError(
    `cannot reach PostgreSQL at ${describeUrl(url)}: ${last} (gave up after ${Math.round(timeoutMs / 1000)} s; ` +
      'check DATABASE_URL, or leave it unset to use the embedded PostgreSQL)',
  );
}

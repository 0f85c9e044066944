import { type ErrorBody, type ErrorCode, errorStatus } from '@mesh/protocol';

/**
 * The one error type of the registry. Thrown anywhere; rendered once by the
 * app's error handler into the wire body `{"error", "timestamp", "code"}`.
 * `message` defaults to the code (the 3.7 wire carries markers such as
 * `claim_superseded` in `error`).
 *
 * It carries no stack trace: it is an answer, never logged with one, and an
 * overloaded replica throws one per shed request (capturing stacks was 6% of
 * its CPU and much of its garbage under `test/chaos/overload.test.ts`).
 */
export class ApiError extends Error {
  declare readonly code: ErrorCode;
  declare readonly status: (typeof errorStatus)[ErrorCode];
  /** Sent as `Retry-After` (seconds); a 503 without one gets a default (middleware/error-handler.ts). */
  declare readonly retryAfterSeconds?: number;

  constructor(code: ErrorCode, message?: string, retryAfterSeconds?: number) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? code);
    Error.stackTraceLimit = limit;
    this.name = 'ApiError';
    Object.assign(this, { code, status: errorStatus[code], retryAfterSeconds });
  }

  body(): ErrorBody {
    return errorBody(this.code, this.message);
  }
}

export const errorBody = (code: ErrorCode, message: string): ErrorBody => ({
  error: message,
  timestamp: new Date().toISOString(),
  code,
});

const connectionErrors = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  // services/status.ts: an operator route gave up waiting on the database.
  'DATABASE_TIMEOUT',
]);

/** The database is unreachable, restarting or out of connections (not a refused statement). */
export function isDatabaseUnavailable(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  return (
    typeof code === 'string' &&
    (connectionErrors.has(code) ||
      /^(08|57P)/.test(code) ||
      code === '53300' ||
      // A database closed to new connections (ALTER DATABASE … ALLOW_CONNECTIONS false).
      (code === '55000' &&
        typeof message === 'string' &&
        message.includes('not currently accepting connections')) ||
      // statement_timeout (--db-statement-timeout): a database too slow to answer.
      code === '57014')
  );
}

/** What a data exception (SQLSTATE class 22) means for the caller's value. */
const dataExceptions: Record<string, string> = {
  '22P05': 'text cannot hold a NUL character (\\u0000)',
  '22021': 'not valid UTF-8',
  '22001': 'a string is too long',
  '22003': 'a number is out of range',
  '22P02': 'a value has the wrong syntax for its type',
  '22007': 'not a valid date or time',
  '22008': 'a date or time is out of range',
  '22030': 'a duplicate JSON object key',
  '22032': 'not valid JSON text',
};

/**
 * Maps a PostgreSQL failure to the wire: a value the database cannot store
 * (class 22, e.g. a NUL character or an out-of-range number) is the caller's
 * error (400); an unreachable or restarting database is 503, as in MCP Mesh.
 * Anything else is not ours to explain (undefined → 500).
 */
export function fromDatabaseError(err: unknown): ApiError | undefined {
  const e = err as { code?: string; message?: string };
  if (typeof e?.code !== 'string') return undefined;
  // The caller's value, named by its SQLSTATE and a sentence of ours: never
  // PostgreSQL's own text, which names types, columns and echoes input
  // (issue 30 finding 12).
  if (e.code.startsWith('22')) {
    return new ApiError(
      'bad_request',
      `invalid value: ${dataExceptions[e.code] ?? 'PostgreSQL cannot store it'} (SQLSTATE ${e.code})`,
    );
  }
  // Class 54 (program limit exceeded: an index row or a statement too large) is
  // a value too big for what it is stored in: the caller's, too.
  if (e.code.startsWith('54')) {
    return new ApiError(
      'bad_request',
      `value too large: PostgreSQL cannot store or index it (SQLSTATE ${e.code})`,
    );
  }
  if (isDatabaseUnavailable(err)) {
    // The driver's message names the database's address (ECONNREFUSED 10.0.0.7:5432):
    // logged by the error handler, never sent to an anonymous caller (issue 18).
    return new ApiError('unavailable', `database unavailable (${e.code})`, 2);
  }
  return undefined;
}

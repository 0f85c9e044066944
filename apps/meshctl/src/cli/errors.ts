/**
 * meshctl's exit codes (documented in docs/meshctl.md):
 * 0 done / safe, 1 a check or the operation failed (aborted, timed out, refused),
 * 2 usage error or the registry / database could not be reached,
 * 3 the registry answered but its database is unavailable (503 `unavailable`).
 */
export const exitCodes = { ok: 0, failed: 1, usage: 2, databaseUnavailable: 3 } as const;
export type ExitCode = (typeof exitCodes)[keyof typeof exitCodes];

/** An error meshctl reports as `Error: <message>` (plus an optional hint) and exits with. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: ExitCode = exitCodes.failed,
    /** A line telling the operator what to do next, printed after the error. */
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** The registry or database could not be reached at all (exit 2). */
export class ConnectionError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, exitCodes.usage, hint);
  }
}

/** Bad flags or arguments (exit 2). */
export class UsageError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, exitCodes.usage, hint);
  }
}

/** The registry is up and answered 503 because its database is unavailable (exit 3, every command). */
export class DatabaseUnavailableError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, exitCodes.databaseUnavailable, hint);
  }
}

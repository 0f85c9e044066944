import { type ErrorBody, type ErrorCode, errorStatus } from '@mesh/protocol';

/**
 * The one error type of the registry. Thrown anywhere; rendered once by the
 * app's error handler into the wire body `{"error", "timestamp", "code"}`.
 * `message` defaults to the code (the 3.7 wire carries markers such as
 * `claim_superseded` in `error`).
 */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly status: (typeof errorStatus)[ErrorCode];
  constructor(
    readonly code: ErrorCode,
    message?: string,
  ) {
    super(message ?? code);
    this.status = errorStatus[code];
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

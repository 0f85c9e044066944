import { z } from 'zod';

/**
 * Every error code the registry can answer with, and its HTTP status. A closed
 * list: clients switch on `code`, so a code never changes meaning once shipped.
 */
export const errorStatus = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  already_terminal: 409,
  claim_superseded: 409,
  not_owner: 403,
  epoch_required: 400,
  payload_too_large: 413,
  /** Ours since 0.2.0: Node's HTTP parser refused the request headers as too large. */
  headers_too_large: 431,
  /** Ours since 0.2.0: the request's headers or body did not arrive in time. */
  request_timeout: 408,
  /** Ours since 0.2.0: an `Expect` header other than `100-continue`. */
  expectation_failed: 417,
  /** `Idempotency-Key` already names a job submitted with a different request (IETF draft: 422). */
  idempotency_key_reused: 422,
  internal: 500,
  unavailable: 503,
  not_ready: 503,
} as const;

export type ErrorCode = keyof typeof errorStatus;
export const errorCodes = Object.keys(errorStatus) as ErrorCode[];

/**
 * The wire error body. `error` and `timestamp` are MCP Mesh 3.7's
 * `ErrorResponse`; `code` is our stable, machine-readable addition.
 *
 * @example {"error":"job not found: 42","code":"not_found","timestamp":"2026-01-01T00:00:00.000Z"}
 */
export const errorBodySchema = z.object({
  error: z.string(),
  timestamp: z.string(),
  code: z.enum(errorCodes as [ErrorCode, ...ErrorCode[]]).optional(),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

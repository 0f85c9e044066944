// The errors a `RegistryClient` call throws: `RegistryError` (the registry
// answered with an error status) and `RegistryUnreachableError` (no answer).

/** A registry answered with an error status; `code`/`body` are what it said. */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    readonly status: number,
    readonly body: unknown,
    message: string,
    /** The registry's `Retry-After`, in ms, on a 429 or 503 that sent one. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
  /** The registry shed the request or its database is away (429/503): worth trying again later. */
  get retryable(): boolean {
    return this.status === 429 || this.status === 503;
  }
  /** The 3.7 fence marker (`{"error": "claim_superseded"}`). */
  get superseded(): boolean {
    return (this.body as { error?: string } | undefined)?.error === 'claim_superseded';
  }
  /**
   * Set on an error `submit` throws: the `Idempotency-Key` it sent. A
   * retryable status (429/503) may come after the job was created; submitting
   * again with this key returns that job, never a second one.
   */
  idempotencyKey?: string;
}

/**
 * No answer from the registry: the connection failed, was cut or timed out.
 * `url` is what was asked (the last URL tried), `cause` the network error
 * (e.g. `ECONNREFUSED`, a `TimeoutError`).
 *
 * @example
 * try { await client.submit(job); }
 * catch (err) { if (err instanceof RegistryUnreachableError) console.error(err.url, err.cause); else throw err; }
 */
export class RegistryUnreachableError extends Error {
  override readonly name = 'RegistryUnreachableError';
  constructor(
    readonly url: string,
    override readonly cause: unknown,
    readonly method = 'GET',
  ) {
    super(`${method} ${url}: registry unreachable (${describeCause(cause)})`, { cause });
  }
  /**
   * Set on an error `submit` throws: the `Idempotency-Key` it sent. The
   * submission may have reached the registry and created the job (its answer
   * was lost); `submit(job, { idempotencyKey })` with this key returns that
   * job, or creates it if it never arrived.
   */
  idempotencyKey?: string;
}

function describeCause(cause: unknown): string {
  const e = cause as {
    name?: string;
    code?: string;
    message?: string;
    cause?: { code?: string; message?: string };
  } | null;
  if (e?.name === 'TimeoutError') return 'timed out';
  return e?.code ?? e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(cause);
}

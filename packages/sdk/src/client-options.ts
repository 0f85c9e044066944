// The options and answers of `RegistryClient`: how it is built, how one
// request is sent, what `/health` says the registry supports.

export interface RegistryClientOptions {
  /** One or more registry URLs; the client fails over between them (an HA fleet without a load balancer). */
  urls: string[];
  /** Per-request timeout in ms (default 10,000). A long-poll adds its wait to it. */
  timeoutMs?: number;
  /**
   * Attempts per request across URLs, for failures worth retrying (default
   * 3, or twice the number of URLs when that is more).
   */
  attempts?: number;
  /** Sent as `X-Mesh-Instance-Id` when set. */
  instanceId?: string;
  /**
   * Bearer token for a registry started with `--agent-token` or
   * `--client-token` (sent as `Authorization: Bearer <token>` on every
   * request). Defaults to the `MESH_TOKEN` environment variable, else the
   * first token line of the file `MESH_TOKEN_FILE` names; none = no header
   * (a registry without tokens, MCP Mesh 3.7).
   *
   * @example new RegistryClient({ urls: ['http://registry:8000'], token: process.env.AGENT_TOKEN })
   */
  token?: string;
}

/** What the registry supports, from `/health` (MCP Mesh 3.7 reports version "1.0.0" and no features). */
export interface RegistryInfo {
  version: string;
  features: Set<string>;
  /** True for a registry with our extensions (not MCP Mesh 3.7). */
  extended: boolean;
}

/** Options of one request. */
export interface RequestOptions {
  /** Safe to repeat: retried on network errors and 503 (otherwise only when the connection was refused). */
  retry?: boolean;
  timeoutMs?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Gives up (the fetch and any retry) when it aborts; the request then rejects with its reason. */
  signal?: AbortSignal;
}

/** Options of `submit`. */
export interface SubmitOptions {
  /**
   * The submission's `Idempotency-Key` (printable ASCII, at most 255
   * characters, no `"` or `\`); a random UUID when absent. The same key
   * within the job's retention names the same job.
   */
  idempotencyKey?: string;
  /** Gives up (the request and any retry) when it aborts. */
  signal?: AbortSignal;
}

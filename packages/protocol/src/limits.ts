/**
 * Bounds of the wire. The main port has no authentication (MCP Mesh 3.7), so
 * every size a caller controls is bounded here, where the registry, the SDK
 * and the CLI all see the same numbers. A request past a bound is refused
 * whole with 400 (`bad_request`) before anything is stored or shared with
 * other callers' statements.
 *
 * @example
 * import { limits } from '@mesh/protocol';
 * if (tools.length > limits.maxToolsPerAgent) throw new Error('too many tools');
 */
export const limits = {
  /** Largest int4 (max_retries, max_duration). */
  int32Max: 2_147_483_647,
  /** Jobs one `POST /jobs/claim` may take (`max_jobs`). */
  maxClaimBatch: 100,
  /** Leases in one `POST /jobs/leases`. */
  maxLeaseRenewals: 1000,
  /** Deltas in one `POST /jobs/batch`. */
  maxDeltas: 1000,
  /**
   * Characters of every identifier a caller names: agent id, agent name,
   * capability, function name, tag, version, instance id, submitted_by,
   * event type. (New agent ids and names also keep 3.7's shorter, stricter
   * rules: 253 and 63 characters, lowercase alphanumerics and hyphens.)
   */
  maxIdentifierLength: 256,
  /** Characters of an `Idempotency-Key` (printable ASCII, no `"` or `\`). */
  maxIdempotencyKeyLength: 255,
  /** Characters of `http_host` (a DNS name is at most 253). */
  maxHostLength: 253,
  /** Tools in one registration. */
  maxToolsPerAgent: 256,
  /** Dependencies of one tool. */
  maxDependenciesPerTool: 64,
  /** Tags of one tool, or of one dependency (members of an OR group count one each). */
  maxTags: 64,
  /** Nesting of any JSON request body (objects and arrays). */
  maxJsonDepth: 128,
  /** Agents one `GET /agents` lists (the oldest first). */
  maxAgentsListed: 1000,
  /**
   * Bytes of job payloads, results and event payloads one `GET /jobs` page or
   * events read returns (at least one item always): past it the page ends
   * early and the cursor (`next_cursor`, `next_after`) continues the read.
   */
  maxResponseBytes: 4 * 1024 * 1024,
  /** Bytes of one event's payload and trace context, as JSON. */
  maxEventBytes: 256 * 1024,
  /** Events one job may have. */
  maxEventsPerJob: 10_000,
  /**
   * Bytes of all the events one job may have (each event's type, payload and
   * trace context as JSON, counted as `maxEventBytes` counts one): past it a
   * post answers 409 `conflict`, as past `maxEventsPerJob`.
   */
  maxEventBytesPerJob: 64 * 1024 * 1024,
} as const;

import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  check,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** Job statuses, MCP Mesh 3.7's five. The first two are live, the rest terminal. */
export const jobStatuses = ['working', 'input_required', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof jobStatuses)[number];

/**
 * Jobs. Wire names are MCP Mesh 3.7's (`id` is `job_id` on the wire's Job
 * object), so rows map to the wire without renaming.
 */
export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey(),
    capability: text('capability').notNull(),
    status: text('status').$type<JobStatus>().notNull().default('working'),
    ownerInstanceId: text('owner_instance_id'),
    // Fencing token: +1 at every claim, by nothing else (DESIGN.md §1).
    claimEpoch: bigint('claim_epoch', { mode: 'number' }).notNull().default(0),
    attemptCount: integer('attempt_count').notNull().default(0),
    maxRetries: integer('max_retries').notNull().default(1),
    maxDuration: integer('max_duration'),
    totalDeadline: tstz('total_deadline'),
    leaseExpiresAt: tstz('lease_expires_at'),
    lastHeartbeatAt: tstz('last_heartbeat_at'),
    submittedAt: tstz('submitted_at').notNull().default(sql`now()`),
    submittedBy: text('submitted_by').notNull().default(''),
    submittedPayload: jsonb('submitted_payload').notNull(),
    progress: doublePrecision('progress'),
    progressMessage: text('progress_message'),
    result: jsonb('result'),
    error: text('error'),
    recvCursor: jsonb('recv_cursor').$type<Record<string, number>>(),
    // Last event seq handed out; posting an event bumps it in the same statement.
    eventSeq: bigint('event_seq', { mode: 'number' }).notNull().default(0),
    // Bytes of the events posted to this job (type, payload and trace context as
    // JSON), bumped with event_seq: bounds one job's log (limits.maxEventBytesPerJob).
    // Ours since 0.2.0; events posted through older replicas are not counted.
    eventBytes: bigint('event_bytes', { mode: 'number' }).notNull().default(0),
    // Replica that handed out the current claim (drain reports its own share).
    claimedByReplica: text('claimed_by_replica'),
    // Set when the row turns terminal: retention deletes by it.
    finishedAt: tstz('finished_at'),
    // The event clean-up has deleted this terminal job's events (so it never rescans it).
    eventsPurged: boolean('events_purged').notNull().default(false),
    // Ours since 0.2.0: the submission's `Idempotency-Key` and a digest of its
    // request, so a retried POST /jobs finds the job it already created and a
    // different request under the same key is refused. Null for submissions
    // without a key (and every job 0.1.0 inserts).
    idempotencyKey: text('idempotency_key'),
    idempotencyFingerprint: text('idempotency_fingerprint'),
  },
  (t) => [
    check(
      'jobs_status_check',
      sql`${t.status} in ('working', 'input_required', 'completed', 'failed', 'cancelled')`,
    ),
    check('jobs_counts_check', sql`${t.attemptCount} >= 0 and ${t.maxRetries} >= 0 and ${t.claimEpoch} >= 0`),
    check('jobs_max_duration_check', sql`${t.maxDuration} is null or ${t.maxDuration} > 0`),
    // The claim hot path (DESIGN.md §4.4): only claimable rows, in FIFO order per
    // capability, so a claim reads the head of one index range whatever the depth
    // of the queue; finished, running and over-budget jobs are not in it, so they
    // can never block the rows behind them.
    index('jobs_claimable_idx')
      .on(t.capability, t.submittedAt, t.id)
      .where(
        sql`${t.status} = 'working' and ${t.ownerInstanceId} is null and ${t.attemptCount} <= ${t.maxRetries}`,
      ),
    // Queued rows whose retry budget is spent: normally none (every path that
    // re-queues applies the budget); the claim retires any it finds here.
    index('jobs_exhausted_idx')
      .on(t.capability)
      .where(
        sql`${t.status} = 'working' and ${t.ownerInstanceId} is null and ${t.attemptCount} > ${t.maxRetries}`,
      ),
    // Live claims by owner: drain's live_claims, the orphan sweep, fencing reads.
    index('jobs_live_owner_idx')
      .on(t.ownerInstanceId)
      .where(sql`${t.ownerInstanceId} is not null and ${t.status} in ('working', 'input_required')`),
    // No index for the lease-expiry sweep: it scans the live claims (a few
    // per agent) once a sweep, while an index on lease_expires_at was written at
    // every claim and renewal (0001_drop_unused_job_indexes).
    // Deadline sweep.
    index('jobs_deadline_idx')
      .on(t.totalDeadline)
      .where(sql`${t.totalDeadline} is not null and ${t.status} in ('working', 'input_required')`),
    // Retention of terminal jobs.
    index('jobs_finished_idx').on(t.finishedAt).where(sql`${t.finishedAt} is not null`),
    // Event clean-up reads jobs_finished_idx (0001_drop_unused_job_indexes
    // dropped its own partial index, written at every completion).
    // GET /jobs: newest first, keyset pagination on (submitted_at, id).
    index('jobs_list_idx').on(t.submittedAt.desc(), t.id.desc()),
    // One job per idempotency key, fleet-wide: the database, not a replica,
    // decides which of two concurrent submissions with one key creates the job.
    uniqueIndex('jobs_idempotency_key_idx').on(t.idempotencyKey).where(sql`${t.idempotencyKey} is not null`),
  ],
);

/** Per-job event log; `seq` is dense per job, starting at 1. */
export const jobEvents = pgTable(
  'job_events',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedByDefaultAsIdentity(),
    jobId: uuid('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    type: text('type').notNull(),
    payload: jsonb('payload'),
    traceContext: jsonb('trace_context'),
    postedBy: text('posted_by'),
    createdAt: tstz('created_at').notNull().default(sql`now()`),
  },
  (t) => [unique('job_events_job_seq_key').on(t.jobId, t.seq)],
);

/** Agent statuses as `meshctl` 3.7.1 shows them. */
export const agentStatuses = ['healthy', 'unhealthy'] as const;
export type AgentStatus = (typeof agentStatuses)[number];

/** Registered agents: one row per agent start (ids are per start). */
export const agents = pgTable(
  'agents',
  {
    agentId: text('agent_id').primaryKey(),
    name: text('name').notNull(),
    agentType: text('agent_type').notNull().default('mcp_agent'),
    runtime: text('runtime'),
    version: text('version'),
    description: text('description').notNull().default(''),
    namespace: text('namespace').notNull().default('default'),
    httpHost: text('http_host'),
    httpPort: integer('http_port'),
    entityId: text('entity_id'),
    status: text('status').$type<AgentStatus>().notNull().default('healthy'),
    // Reported by newer SDKs in X-Mesh-Sdk-Version; null = legacy client.
    sdkVersion: text('sdk_version'),
    // The last full registration body, for dependency resolution and /agents.
    registration: jsonb('registration').notNull().default(sql`'{}'::jsonb`),
    totalDependencies: integer('total_dependencies').notNull().default(0),
    dependenciesResolved: integer('dependencies_resolved').notNull().default(0),
    createdAt: tstz('created_at').notNull().default(sql`now()`),
    // Last heartbeat of any kind, on the database clock.
    updatedAt: tstz('updated_at').notNull().default(sql`now()`),
    lastFullRefresh: tstz('last_full_refresh').notNull().default(sql`now()`),
  },
  (t) => [
    check('agents_status_check', sql`${t.status} in ('healthy', 'unhealthy')`),
    index('agents_name_idx').on(t.name),
    // By status only (0004_agents_heartbeat_hot): updated_at changes at every
    // heartbeat, and an index on it made each heartbeat write a new index entry
    // in every index of the table; with none, PostgreSQL updates the row in place
    // (a HOT update). The health monitor reads the healthy agents and filters.
    index('agents_status_idx').on(t.status),
  ],
);

/** Capabilities an agent provides (one row per tool). */
export const agentCapabilities = pgTable(
  'agent_capabilities',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedByDefaultAsIdentity(),
    agentId: text('agent_id')
      .notNull()
      .references(() => agents.agentId, { onDelete: 'cascade' }),
    capability: text('capability').notNull(),
    functionName: text('function_name').notNull(),
    version: text('version').notNull().default('1.0.0'),
    description: text('description'),
    tags: jsonb('tags').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    dependencies: jsonb('dependencies'),
    inputSchema: jsonb('input_schema'),
    kwargs: jsonb('kwargs'),
  },
  (t) => [
    index('agent_capabilities_capability_idx').on(t.capability),
    index('agent_capabilities_agent_idx').on(t.agentId),
  ],
);

/** Registry processes, one row per replica id, heartbeated on the database clock. */
export const registryReplicas = pgTable('registry_replicas', {
  replicaId: text('replica_id').primaryKey(),
  bootId: uuid('boot_id').notNull(),
  version: text('version').notNull(),
  schemaVersion: integer('schema_version').notNull(),
  mainUrl: text('main_url'),
  adminUrl: text('admin_url'),
  startedAt: tstz('started_at').notNull().default(sql`now()`),
  lastSeenAt: tstz('last_seen_at').notNull().default(sql`now()`),
  draining: boolean('draining').notNull().default(false),
  drainingSince: tstz('draining_since'),
  stoppedAt: tstz('stopped_at'),
});

/** Fleet-wide settings shared by every replica (e.g. fleet drain). */
export const registrySettings = pgTable('registry_settings', {
  key: text('key').primaryKey(),
  value: jsonb('value').notNull(),
  updatedAt: tstz('updated_at').notNull().default(sql`now()`),
});

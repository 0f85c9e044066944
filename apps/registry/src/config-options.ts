/**
 * The registry's option table: one entry per setting (flag, environment
 * variables, help text, parser, default) and the parsers they share.
 * config.ts reads flags and environment through it (`loadConfig`).
 */
import { readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { parseDurationMs } from './duration.ts';
import { type LogLevel, logLevels, type RegistryConfig } from './registry-config.ts';
import { cidrList } from './services/cancel-forward.ts';
import { tokenFile, tokenList } from './tokens.ts';

type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };
const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = (problem: string): Parsed<never> => ({ ok: false, problem });

interface Setting<K extends keyof RegistryConfig> {
  key: K;
  flag: string;
  alias?: string;
  /** Environment variables, ours first; later ones are MCP Mesh's names for the same setting. */
  env: string[];
  describe: string;
  parse(raw: string): Parsed<RegistryConfig[K]>;
  fallback(partial: Partial<RegistryConfig>): RegistryConfig[K];
}

const integer =
  (min: number, max: number, what: string) =>
  (raw: string): Parsed<number> => {
    const t = raw.trim();
    if (!/^-?\d+$/.test(t) || Number(t) < min || Number(t) > max) {
      return bad(`must be ${what} (an integer from ${min} to ${max}), got "${raw}"`);
    }
    return ok(Number(t));
  };

/**
 * Longest duration a timer or an int4 of milliseconds holds: Node fires a
 * longer setTimeout at once, and PostgreSQL refuses a longer `::int` (issue 18:
 * `--agent-timeout 30d` broke every sweep).
 */
export const maxTimerMs = 2_147_483_647;
/** Retention and staleness only ever reach SQL as bigint milliseconds or int seconds. */
const maxRetentionMs = 3650 * 86_400_000;

const duration =
  (minMs: number, maxMs = maxTimerMs) =>
  (raw: string): Parsed<number> => {
    const ms = parseDurationMs(raw);
    if (ms === undefined)
      return bad(`must be a duration such as 30s, 1m30s or a number of seconds, got "${raw}"`);
    if (ms < minMs) return bad(`must be at least ${minMs} ms, got "${raw}"`);
    if (ms > maxMs) {
      return bad(
        maxMs === maxTimerMs
          ? `must be at most 24d20h31m23s (${maxTimerMs} ms, the longest timer), got "${raw}"`
          : `must be at most ${maxMs / 86_400_000}d, got "${raw}"`,
      );
    }
    return ok(ms);
  };

/**
 * A role's bearer tokens (tokens.ts): `--<role>-token` (comma-separated, so
 * two can be live while one is rotated) and `--<role>-token-file` (one per
 * line; kept out of `ps`). Both may be given; the registry accepts any of them.
 */
function tokenSettings(
  role: string,
  key: 'adminTokens' | 'agentTokens' | 'clientTokens',
  fileKey: 'adminTokenFile' | 'agentTokenFile' | 'clientTokenFile',
  what: string,
): [Setting<typeof key>, Setting<typeof fileKey>] {
  const env = `MESH_${role.toUpperCase()}_TOKEN`;
  return [
    {
      key,
      flag: `${role}-token`,
      env: [env],
      describe: `Require "Authorization: Bearer <token>" on ${what}; comma-separated for rotation. Visible in ps: prefer --${role}-token-file (default: none, as MCP Mesh 3.7)`,
      parse: tokenList,
      fallback: () => [],
    },
    {
      key: fileKey,
      flag: `${role}-token-file`,
      env: [`${env}_FILE`],
      describe: `File of ${role} tokens, one per line (# comments allowed), read at start`,
      parse: tokenFile,
      fallback: () => [],
    },
  ];
}

/**
 * The process's soft limit on open files (Linux: /proc/self/limits), or
 * undefined where it cannot be read or is unlimited.
 */
export function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    return Number.isSafeInteger(soft) && soft > 0 ? soft : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The default bound on main-port connections (issue 30 finding 5: ~19,950
 * half-open connections used every descriptor, and the main and admin ports
 * reset for 40 s): the file limit less a reserve for the database pools, the
 * admin port's connections, log and data files; no bound where the limit is
 * unknown. Never below 64.
 */
export function connectionsWithinFileLimit(limit: number | undefined, reserve = 256): number {
  if (limit === undefined) return 0;
  return Math.max(64, limit - reserve);
}

// MCP Mesh spells its levels TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL.
const levelAliases: Record<string, LogLevel> = { warning: 'warn', critical: 'fatal' };

// As root the embedded server runs as the `postgres` OS user, which cannot
// enter root's home: use the system location instead.
const defaultDataDir = () =>
  process.getuid?.() === 0
    ? '/var/lib/mesh-registry'
    : join(process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'mesh-registry');

/** A boolean setting: true/1/yes/on (or empty) and false/0/no/off. */
const flag = (raw: string) => {
  const t = raw.trim().toLowerCase();
  if (['', 'true', '1', 'yes', 'on'].includes(t)) return ok(true);
  if (['false', '0', 'no', 'off'].includes(t)) return ok(false);
  return bad(`must be true or false, got "${raw}"`);
};

/** Every option: its flag, environment variables, help line, parser and default. */
export const settings: Setting<keyof RegistryConfig>[] = [
  {
    key: 'databaseUrl',
    flag: 'database-url',
    env: ['DATABASE_URL'],
    describe: 'PostgreSQL URL (postgres://…). Unset: start an embedded PostgreSQL in --data-dir',
    parse: (raw) => {
      const t = raw.trim();
      if (t === '') return ok(undefined);
      if (!/^postgres(ql)?:\/\//.test(t)) {
        return bad(
          `must be a PostgreSQL URL starting with postgres:// or postgresql:// (SQLite is not supported), got "${raw}"`,
        );
      }
      try {
        new URL(t);
      } catch {
        return bad(`is not a valid URL: "${raw}"`);
      }
      return ok(t);
    },
    fallback: () => undefined,
  },
  {
    key: 'host',
    flag: 'host',
    alias: 'H',
    env: ['HOST'],
    describe: 'Address the main and admin listeners bind (default 127.0.0.1; 0.0.0.0 for all interfaces)',
    parse: (raw) => (raw.trim() ? ok(raw.trim()) : bad('must not be empty')),
    fallback: () => '127.0.0.1',
  },
  {
    key: 'port',
    flag: 'port',
    alias: 'p',
    env: ['PORT'],
    describe: 'Main port (default 8000; 0 = any free port, logged at start)',
    parse: integer(0, 65535, 'a TCP port'),
    fallback: () => 8000,
  },
  {
    key: 'adminPort',
    flag: 'admin-port',
    env: ['MESH_ADMIN_PORT', 'MCP_MESH_ADMIN_PORT'],
    describe: 'Separate admin port for /admin/* (0 or unset = admin routes on the main port)',
    parse: (raw) => {
      const p = integer(0, 65535, 'a TCP port')(raw);
      return p.ok ? ok(p.value === 0 ? undefined : p.value) : p;
    },
    fallback: () => undefined,
  },
  {
    key: 'replicaId',
    flag: 'replica-id',
    env: ['MESH_REPLICA_ID', 'REGISTRY_INSTANCE_ID'],
    describe: 'Stable id of this replica (default: <hostname>-<port>)',
    parse: (raw) =>
      /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(raw.trim())
        ? ok(raw.trim())
        : bad(`must be 1-128 letters, digits, '.', '_', ':' or '-', got "${raw}"`),
    fallback: (c) => `${hostname()}-${c.port ?? 8000}`,
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    env: ['MESH_LOG_LEVEL', 'MCP_MESH_LOG_LEVEL'],
    describe: `Log level: ${logLevels.join(', ')} (default info; MCP Mesh's WARNING and CRITICAL are accepted)`,
    parse: (raw) => {
      const l = raw.trim().toLowerCase();
      const level = levelAliases[l] ?? l;
      return (logLevels as readonly string[]).includes(level)
        ? ok(level as LogLevel)
        : bad(`must be one of ${logLevels.join(', ')}, got "${raw}"`);
    },
    fallback: () => 'info',
  },
  {
    key: 'logFormat',
    flag: 'log-format',
    env: ['MESH_LOG_FORMAT'],
    describe: 'Log format: json (default; one object per line) or pretty',
    parse: (raw) =>
      raw.trim() === 'json' || raw.trim() === 'pretty'
        ? ok(raw.trim() as 'json' | 'pretty')
        : bad(`must be json or pretty, got "${raw}"`),
    fallback: () => 'json',
  },
  {
    key: 'dataDir',
    flag: 'data-dir',
    env: ['MESH_DATA_DIR'],
    describe:
      'Directory of the embedded PostgreSQL, used only without DATABASE_URL (default $XDG_DATA_HOME/mesh-registry, or /var/lib/mesh-registry as root)',
    parse: (raw) => (raw.trim() ? ok(raw.trim()) : bad('must not be empty')),
    fallback: defaultDataDir,
  },
  {
    key: 'dbPoolSize',
    flag: 'db-pool-size',
    env: ['MESH_DB_POOL_SIZE'],
    describe: 'PostgreSQL connections in the pool (default 20)',
    parse: integer(1, 1000, 'a pool size'),
    fallback: () => 20,
  },
  {
    key: 'dbJobPoolSize',
    flag: 'db-job-pool-size',
    env: ['MESH_DB_JOB_POOL_SIZE'],
    describe:
      'PostgreSQL connections kept for the shared claim and completion statements, besides the pool (default 3)',
    parse: integer(1, 100, 'a pool size'),
    fallback: () => 3,
  },
  {
    key: 'dbConnectTimeoutMs',
    flag: 'db-connect-timeout',
    env: ['MESH_DB_CONNECT_TIMEOUT'],
    describe: 'How long to wait for PostgreSQL at start before exiting (default 20s)',
    parse: duration(1_000),
    fallback: () => 20_000,
  },
  {
    key: 'dbRequestTimeoutMs',
    flag: 'db-request-timeout',
    env: ['MESH_DB_REQUEST_TIMEOUT'],
    describe:
      'Longest a request on the main port waits for the database before answering 503 with Retry-After; a long-poll gets its own wait on top (default 10s; 0 = off)',
    parse: duration(0),
    fallback: () => 10_000,
  },
  {
    key: 'dbStatementTimeoutMs',
    flag: 'db-statement-timeout',
    env: ['MESH_DB_STATEMENT_TIMEOUT'],
    describe:
      "PostgreSQL statement_timeout of the registry's request connections: a statement the server takes longer on is cancelled and the request answers 503 (default 0 = off)",
    parse: duration(0),
    fallback: () => 0,
  },
  {
    key: 'maxInFlight',
    flag: 'max-in-flight',
    env: ['MESH_MAX_IN_FLIGHT'],
    describe:
      'Requests served at once per route class (claim, submit, owner writes, reads); more wait in a bounded queue (default 64)',
    parse: integer(1, 100_000, 'a number of requests'),
    fallback: () => 64,
  },
  {
    key: 'maxQueued',
    flag: 'max-queued',
    env: ['MESH_MAX_QUEUED'],
    describe:
      'Requests per route class waiting for a slot; beyond, a request is shed at once with 503 overloaded and Retry-After (default 256)',
    parse: integer(0, 1_000_000, 'a number of requests'),
    fallback: () => 256,
  },
  {
    key: 'maxQueueWaitMs',
    flag: 'max-queue-wait',
    env: ['MESH_MAX_QUEUE_WAIT'],
    describe: 'Longest a request waits for a slot before being shed with 503 overloaded (default 2s)',
    parse: duration(1),
    fallback: () => 2_000,
  },
  {
    key: 'maxLongPolls',
    flag: 'max-long-polls',
    env: ['MESH_MAX_LONG_POLLS'],
    describe:
      'Long-polls held at once (POST /jobs/signals, GET /jobs/{id}/events with wait); beyond, 503 overloaded (default 4096)',
    parse: integer(1, 1_000_000, 'a number of requests'),
    fallback: () => 4_096,
  },
  {
    key: 'maxConnections',
    flag: 'max-connections',
    env: ['MESH_MAX_CONNECTIONS'],
    describe:
      'Open connections on the main port; beyond, a new connection is closed on arrival (the client sees a reset and retries), so a connection flood cannot stall the admin port or run the process out of file descriptors. Count 2 per agent (heartbeats, long-poll claim) plus clients; 0 = no bound (default: the file-descriptor limit less 256 for the database pools, the admin port and files)',
    parse: integer(0, 10_000_000, 'a number of connections'),
    fallback: () => connectionsWithinFileLimit(openFilesLimit()),
  },
  {
    key: 'migrationLockTimeoutMs',
    flag: 'migration-lock-timeout',
    env: ['MESH_MIGRATION_LOCK_TIMEOUT'],
    describe: "How long to wait for another replica's migration lock (default 60s)",
    parse: duration(100),
    fallback: () => 60_000,
  },
  {
    key: 'shutdownTimeoutMs',
    flag: 'shutdown-timeout',
    env: ['MESH_SHUTDOWN_TIMEOUT'],
    describe: 'On SIGTERM, how long in-flight requests may take to finish (default 10s)',
    parse: duration(0),
    fallback: () => 10_000,
  },
  {
    key: 'defaultLeaseMs',
    flag: 'default-lease',
    env: ['MESH_DEFAULT_LEASE'],
    describe: 'Lease window of a job submitted without max_duration (default 300s, as MCP Mesh)',
    parse: duration(1_000),
    fallback: () => 300_000,
  },
  {
    key: 'sweepIntervalMs',
    flag: 'sweep-interval',
    env: ['MESH_SWEEP_INTERVAL', 'MCP_MESH_SWEEP_INTERVAL'],
    describe: 'How often lease expiry, deadlines, staleness and retention are swept (default 5s)',
    parse: duration(100),
    fallback: () => 5_000,
  },
  {
    key: 'staleTimeoutMs',
    flag: 'job-stale-timeout',
    env: ['MESH_JOB_STALE_TIMEOUT', 'MCP_MESH_JOB_STALE_TIMEOUT'],
    describe: 'Fail jobs without total_deadline older than this (floored at max_duration); 0 = off (default)',
    parse: duration(0, maxRetentionMs),
    fallback: () => 0,
  },
  {
    key: 'eventRetentionMs',
    flag: 'event-retention',
    env: ['MESH_EVENT_RETENTION', 'MCP_MESH_RETENTION'],
    describe: "Delete a finished job's events this long after it finished (default 1h; 0 = keep)",
    parse: duration(0, maxRetentionMs),
    fallback: () => 3_600_000,
  },
  {
    key: 'jobRetentionMs',
    flag: 'job-retention',
    env: ['MESH_JOB_RETENTION'],
    describe: 'Delete finished jobs this long after they finished (default 7d; 0 = keep forever)',
    parse: duration(0, maxRetentionMs),
    fallback: () => 7 * 86_400_000,
  },
  {
    key: 'requireClaimEpoch',
    flag: 'require-claim-epoch',
    env: ['MESH_REQUIRE_CLAIM_EPOCH'],
    describe: 'Refuse owner writes without claim_epoch, once every agent is upgraded (default false)',
    parse: flag,
    fallback: () => false,
  },
  {
    key: 'advertiseAdminPort',
    flag: 'advertise-admin-port',
    env: ['MESH_ADVERTISE_ADMIN_PORT'],
    describe:
      "Say the admin listener's port (never a host or URL) in /health, so meshctl finds it without --admin-url (default true; false hides it)",
    parse: flag,
    fallback: () => true,
  },
  {
    key: 'longPollClaim',
    flag: 'long-poll-claim',
    env: ['MESH_LONG_POLL_CLAIM'],
    describe:
      'Let POST /jobs/claim park up to wait_ms until work is queued (feature long-poll-claim; default true; false: claims answer at once and clients poll)',
    parse: flag,
    fallback: () => true,
  },
  {
    key: 'claimBesideDeltas',
    flag: 'claim-beside-deltas',
    env: ['MESH_CLAIM_BESIDE_DELTAS'],
    describe:
      'Let POST /jobs/batch claim beside its deltas (feature claim-beside-deltas; default true; false: the claim field is ignored, as by older registries, and SDK workers claim on their own)',
    parse: flag,
    fallback: () => true,
  },
  {
    key: 'maxBodyBytes',
    flag: 'max-body-bytes',
    env: ['MESH_MAX_BODY_BYTES'],
    describe: 'Largest request body accepted, in bytes (default 1048576)',
    parse: integer(1024, 256 * 1024 * 1024, 'a size in bytes'),
    fallback: () => 1_048_576,
  },
  ...tokenSettings(
    'admin',
    'adminTokens',
    'adminTokenFile',
    "admin routes, force reclaim, GET /jobs and the dashboard's /ui/api/*",
  ),
  ...tokenSettings('agent', 'agentTokens', 'agentTokenFile', "the agents' routes of the main port"),
  ...tokenSettings(
    'client',
    'clientTokens',
    'clientTokenFile',
    "the clients' routes of the main port (submit, read, cancel, answer input)",
  ),
  {
    key: 'advertiseHost',
    flag: 'advertise-host',
    env: ['MESH_ADVERTISE_HOST', 'POD_IP'],
    describe:
      'Host recorded for this replica in the fleet table (default: --host, or the hostname when binding all interfaces)',
    parse: (raw) => (raw.trim() ? ok(raw.trim()) : bad('must not be empty')),
    fallback: () => undefined,
  },
  {
    key: 'adminHosts',
    flag: 'admin-hosts',
    env: ['MESH_ADMIN_HOSTS'],
    describe:
      "Host names the admin routes and the dashboard answer to, besides IP addresses, localhost, this machine's name and --advertise-host; comma-separated, a leading dot allows subdomains (.svc.cluster.local). Any other Host is refused, against DNS rebinding (default: none)",
    parse: (raw) =>
      ok(
        raw
          .split(',')
          .map((n) => n.trim())
          .filter(Boolean),
      ),
    fallback: () => [],
  },
  {
    key: 'replicaHeartbeatMs',
    flag: 'replica-heartbeat',
    env: ['MESH_REPLICA_HEARTBEAT'],
    describe: 'How often this replica records itself and reads the fleet drain (default 1s)',
    parse: duration(100),
    fallback: () => 1_000,
  },
  {
    key: 'healthCheckIntervalMs',
    flag: 'health-check-interval',
    env: ['MESH_HEALTH_CHECK_INTERVAL', 'HEALTH_CHECK_INTERVAL'],
    describe: 'How often silent agents are looked for (default 10s)',
    parse: duration(100),
    fallback: () => 10_000,
  },
  {
    key: 'agentTimeoutMs',
    flag: 'agent-timeout',
    env: ['MESH_AGENT_TIMEOUT', 'DEFAULT_TIMEOUT_THRESHOLD'],
    describe: 'Silence after which an agent turns unhealthy and its jobs are re-queued (default 20s)',
    parse: duration(1_000),
    fallback: () => 20_000,
  },
  {
    key: 'outageGraceMs',
    flag: 'outage-grace',
    env: ['MESH_OUTAGE_GRACE'],
    describe:
      'After the whole registry was down, how long agents get to come back before any sweep takes their jobs (default 60s; 0 = off)',
    parse: duration(0),
    fallback: () => 60_000,
  },
  {
    key: 'cancelForward',
    flag: 'cancel-forward',
    env: ['MESH_CANCEL_FORWARD'],
    describe:
      "Where a cancel is forwarded to the owner agent's http_host:http_port: any (default; never this registry's own listeners), off, or a comma-separated CIDR list such as 10.0.0.0/8,fd00::/8",
    parse: (raw) => {
      const t = raw.trim().toLowerCase();
      if (t === 'any') return ok({ kind: 'any' });
      if (t === 'off' || t === 'none') return ok({ kind: 'off' });
      const cidrs = t
        .split(',')
        .map((c) => c.trim())
        .filter(Boolean);
      try {
        if (cidrs.length === 0) throw new Error('empty list');
        cidrList(cidrs);
      } catch (err) {
        return bad(
          `must be any, off or a comma-separated list of CIDRs (${(err as Error).message}), got "${raw}"`,
        );
      }
      return ok({ kind: 'cidrs', cidrs });
    },
    fallback: () => ({ kind: 'any' }),
  },
];

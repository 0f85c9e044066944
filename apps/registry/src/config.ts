/**
 * The registry's configuration: `RegistryConfig`, `ConfigError` and
 * `loadConfig` (flags, then environment, validated all at once). The option
 * table and its parsers are in config-options.ts.
 */
import yargs from 'yargs';
import { type LogLevel, settings } from './config-options.ts';
import type { ForwardPolicy } from './services/cancel-forward.ts';
import { registryVersion } from './version.ts';

export { type LogLevel, logLevels, maxTimerMs } from './config-options.ts';

/** The registry's validated configuration. */
export interface RegistryConfig {
  /** PostgreSQL URL; undefined = start the embedded PostgreSQL in `dataDir`. */
  databaseUrl: string | undefined;
  host: string;
  port: number;
  /** Separate admin listener; undefined = admin routes on the main port (3.7 behaviour). */
  adminPort: number | undefined;
  replicaId: string;
  logLevel: LogLevel;
  logFormat: 'json' | 'pretty';
  dataDir: string;
  dbPoolSize: number;
  /** Connections of the shared claim and completion statements, apart from the pool. */
  dbJobPoolSize: number;
  dbConnectTimeoutMs: number;
  /** Longest a main-port request waits on the database before answering 503 (plus a long-poll's own wait); 0 = off. */
  dbRequestTimeoutMs: number;
  /** PostgreSQL statement_timeout of the request pools; 0 = off. */
  dbStatementTimeoutMs: number;
  /** Requests of one route class served at once (claim, submit, owner, read). */
  maxInFlight: number;
  /** Requests of one route class waiting for a slot before being shed (503 overloaded). */
  maxQueued: number;
  /** Longest a request waits for a slot before being shed. */
  maxQueueWaitMs: number;
  /** Long-polls (job signals, event reads with wait) held at once. */
  maxLongPolls: number;
  /** Open connections on the main port; 0 = no bound. */
  maxConnections: number;
  migrationLockTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** Lease window of a job without max_duration. */
  defaultLeaseMs: number;
  sweepIntervalMs: number;
  /** Opt-in ceiling on a deadline-less job's total runtime; 0 = off. */
  staleTimeoutMs: number;
  /** Events of a terminal job are deleted this long after it finished; 0 = keep. */
  eventRetentionMs: number;
  /** Terminal jobs are deleted this long after they finished; 0 = keep. */
  jobRetentionMs: number;
  /** Refuse epoch-less owner writes (once every agent sends claim epochs). */
  requireClaimEpoch: boolean;
  /** Say the admin listener's port in `/health` (meshctl finds the admin URL from it). */
  advertiseAdminPort: boolean;
  /** Serve `wait_ms` on `POST /jobs/claim` (feature `long-poll-claim`). */
  longPollClaim: boolean;
  /** POST /jobs/batch honours `claim` (feature claim-beside-deltas). */
  claimBesideDeltas: boolean;
  maxBodyBytes: number;
  /** When any is set, admin routes, force reclaim and GET /jobs require one of these bearer tokens. */
  adminTokens: string[];
  /** Admin tokens read from --admin-token-file (merged into adminTokens). */
  adminTokenFile: string[];
  /** When any is set, the agents' routes of the main port require one (tokens.ts). */
  agentTokens: string[];
  agentTokenFile: string[];
  /** When any is set, the clients' routes of the main port require one (tokens.ts). */
  clientTokens: string[];
  clientTokenFile: string[];
  /** Host other replicas and meshctl use to reach this one (recorded in the fleet table). */
  advertiseHost: string | undefined;
  /** Names the admin routes answer to besides IPs, localhost, the hostname and advertiseHost (admin-origin.ts). */
  adminHosts: string[];
  /** How often this replica records itself (and reads the fleet drain). */
  replicaHeartbeatMs: number;
  /** How often the health monitor looks for silent agents. */
  healthCheckIntervalMs: number;
  /** Silence after which an agent turns unhealthy. */
  agentTimeoutMs: number;
  /** After a whole-registry outage, how long agents get before any sweep may take their jobs. */
  outageGraceMs: number;
  /** Where cancels may be forwarded to owner agents: anywhere but this registry, some CIDRs, or nowhere. */
  cancelForward: ForwardPolicy;
}

/** A configuration that cannot be used; `problems` are one line each. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

const usageExamples = `Examples:
  mesh-registry                                   start on :8000 with an embedded PostgreSQL
  DATABASE_URL=postgres://u:p@db/mesh mesh-registry --port 8000 --admin-port 8001
  mesh-registry --replica-id registry-a --log-level debug

Exit codes: 0 clean stop; 1 could not start (database unreachable, port in use, migration lock
timeout); 2 invalid configuration or usage; 3 the database holds a migration that is breaking for
this release (run the release the message names, or restore the pre-upgrade snapshot).`;

export type CliOutcome =
  | { kind: 'run'; config: RegistryConfig }
  | { kind: 'exit'; code: number; output: string };

/**
 * Reads flags (which win) and environment variables, validates them all and
 * reports every problem at once.
 */
export async function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<CliOutcome> {
  let output = '';
  let usageError: string | undefined;
  const parser = yargs(argv)
    .scriptName('mesh-registry')
    .usage(
      'Usage: mesh-registry [options]\n\nThe mesh registry: agents register and heartbeat, jobs are submitted, claimed under leases and claim epochs.\nEvery option can also be set through the environment; flags win.',
    )
    .parserConfiguration({ 'parse-numbers': false, 'parse-positional-numbers': false })
    .strict()
    .version(registryVersion)
    .alias('version', 'v')
    .help()
    .alias('help', 'h')
    .epilogue(usageExamples)
    .wrap(Math.min(120, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      usageError = msg || err?.message || 'invalid arguments';
    });
  for (const s of settings) {
    parser.option(s.flag, {
      type: 'string',
      describe: `${s.describe} [env: ${s.env.join(', ')}]`,
      ...(s.alias ? { alias: s.alias } : {}),
    });
  }
  const args = (await parser.parseAsync(argv, {}, (_err, _argv, out) => {
    output = out;
  })) as Record<string, unknown>;
  if (usageError)
    return {
      kind: 'exit',
      code: 2,
      output: `mesh-registry: ${usageError}\nRun mesh-registry --help for usage.`,
    };
  if (args.help || args.version) return { kind: 'exit', code: 0, output };

  const problems: string[] = [];
  const config: Partial<RegistryConfig> = {};
  for (const s of settings) {
    const fromFlag = args[s.flag];
    const envName = s.env.find((name) => env[name] !== undefined && env[name] !== '');
    const source = typeof fromFlag === 'string' ? `--${s.flag}` : envName;
    const raw = typeof fromFlag === 'string' ? fromFlag : envName ? (env[envName] as string) : undefined;
    if (raw === undefined) {
      (config as Record<string, unknown>)[s.key] = s.fallback(config);
      continue;
    }
    const parsed = s.parse(raw);
    if (parsed.ok) (config as Record<string, unknown>)[s.key] = parsed.value;
    else problems.push(`${source}: ${parsed.problem}`);
  }
  if (config.adminPort !== undefined && config.adminPort === config.port && config.port !== 0) {
    problems.push(`--admin-port: must differ from the main port (${config.port})`);
  }
  for (const role of ['admin', 'agent', 'client'] as const) {
    const [list, file] = [`${role}Tokens`, `${role}TokenFile`] as const;
    config[list] = [...new Set([...(config[list] ?? []), ...(config[file] ?? [])])];
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { kind: 'run', config: config as RegistryConfig };
}

/**
 * The registry's configuration: `RegistryConfig`, `ConfigError` and
 * `loadConfig` (flags, then environment, validated all at once). The option
 * table and its parsers are in config-options.ts.
 */
import yargs from 'yargs';
import { settings } from './config-options.ts';
import type { RegistryConfig } from './registry-config.ts';
import { registryVersion } from './version.ts';

export { maxTimerMs } from './config-options.ts';
export type { ForwardPolicy, LogLevel, RegistryConfig } from './registry-config.ts';
export { logLevels } from './registry-config.ts';

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

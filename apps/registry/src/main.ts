import { ConfigError, loadConfig } from './config.ts';
import { exitCodes, StartupError } from './database.ts';
import { isDatabaseUnavailable } from './errors.ts';
import { createLogger } from './logger.ts';
import { startRegistry } from './server.ts';

/**
 * The `mesh-registry` command. Exit codes: 0 clean stop, 1 could not start
 * (database, port, migration lock), 2 invalid configuration or usage, 3 the
 * database holds a migration that is breaking for this release.
 */
export async function main(argv: string[]): Promise<void> {
  let outcome: Awaited<ReturnType<typeof loadConfig>>;
  try {
    outcome = await loadConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`mesh-registry: ${err.message}\nRun mesh-registry --help for usage.\n`);
      process.exit(2);
    }
    throw err;
  }
  if (outcome.kind === 'exit') {
    (outcome.code === 0 ? process.stdout : process.stderr).write(`${outcome.output}\n`);
    process.exit(outcome.code);
  }
  const { config } = outcome;
  const logger = createLogger(config);
  // A database connection reset surfacing as a rejection nobody awaited (a
  // driver query orphaned when its socket died, seen when a partition heals
  // under load, issue 16) must not take the replica down: it is logged, and
  // the pool reconnects. Info, not warn: the outage itself has its one warn
  // line (services/status.ts). Anything else still ends the process, as Node would.
  process.on('unhandledRejection', (err) => {
    if (isDatabaseUnavailable(err)) {
      logger.info({ err }, 'database connection failure nobody awaited (ignored; the pool reconnects)');
      return;
    }
    logger.fatal({ err }, 'unhandled rejection');
    setTimeout(() => process.exit(1), 50);
  });
  try {
    const registry = await startRegistry(config, logger);
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      registry.shutdown(signal).then(
        () => process.exit(0),
        (err) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  } catch (err) {
    const message =
      err instanceof StartupError ? err.message : `unexpected error: ${(err as Error).stack ?? err}`;
    logger.fatal(message);
    process.stderr.write(`mesh-registry: ${message}\n`);
    const code = err instanceof StartupError ? err.exitCode : exitCodes.startFailed;
    // Let pino flush before exiting.
    setTimeout(() => process.exit(code), 50);
  }
}

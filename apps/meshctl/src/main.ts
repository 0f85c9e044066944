import yargs from 'yargs';
import { globalOptions } from './cli/connection.ts';
import { CliError, exitCodes, UsageError } from './cli/errors.ts';
import { agentCommands } from './commands/agents.ts';
import { dbCommand } from './commands/db.ts';
import { doctorCommand } from './commands/doctor.ts';
import { jobCommand } from './commands/job/index.ts';
import { registryCommand } from './commands/registry/index.ts';
import { upgradeCommand } from './commands/upgrade.ts';
import { meshctlVersion } from './version.ts';

const epilogue = `Exit codes: 0 done (for drains: safe; for upgrade check: go), 1 failed, aborted, timed out or no-go, 2 usage error or registry/database unreachable, 3 registry up but its database unavailable.
Docs: docs/meshctl.md`;

/**
 * The `meshctl` command line: MCP Mesh meshctl 3.7.1's commands and flags
 * (`list`, `status`, `registry …`, `job status|reclaim`) and ours on top.
 *
 * @example
 *   await main(['registry', 'drain', '--all', '--wait']);
 */
export async function main(argv: string[]): Promise<void> {
  // A closed pipe (`meshctl registry replicas | head -1`) is the reader saying
  // it has enough: end quietly, exit 0.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(exitCodes.ok);
    throw err;
  });
  process.stderr.on('error', () => {});
  const parser = globalOptions(yargs(argv))
    .scriptName('meshctl')
    .usage(
      'Usage: $0 <command> [options]\n\nOperate a mesh registry: drains, fleets, jobs, agents, the database and upgrades.',
    )
    .command(registryCommand)
    .command(jobCommand)
    .command(agentCommands)
    .command(dbCommand)
    .command(doctorCommand)
    .command(upgradeCommand)
    .demandCommand(1, 'no command given')
    .recommendCommands()
    .strict()
    .completion('completion', 'Print a bash/zsh completion script (meshctl completion >> ~/.bashrc)')
    .version(meshctlVersion)
    .alias('version', 'v')
    .help()
    .alias('help', 'h')
    .wrap(Math.min(120, process.stdout.columns || 100))
    .epilogue(epilogue)
    .exitProcess(false)
    // Throwing here stops yargs from running the handler after a failed check.
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    });
  try {
    await parser.parseAsync();
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`Error: ${err.message}\n`);
      if (err.hint) process.stderr.write(`${err.hint}\n`);
      else if (err instanceof UsageError) process.stderr.write("Run 'meshctl --help' for usage.\n");
      process.exitCode = err.exitCode;
    } else {
      // A bug in meshctl itself: show where.
      process.stderr.write(`Error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = exitCodes.usage;
    }
  }
}

import { readFileSync } from 'node:fs';
import yargs from 'yargs';

const version: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

/**
 * The `meshctl` command. Commands arrive with the drain/HA and meshctl
 * releases; this skeleton only parses the 3.7.1 connection flags.
 */
export async function main(argv: string[]): Promise<void> {
  let failed: string | undefined;
  await yargs(argv)
    .scriptName('meshctl')
    .usage(
      'Usage: meshctl <command> [options]\n\nOperate a mesh registry: drains, fleets, jobs, agents and the database.',
    )
    .option('registry-url', {
      type: 'string',
      describe: 'Registry URL (wins over host/port) [env: MESH_REGISTRY_URL]',
    })
    .option('registry-host', {
      type: 'string',
      describe: 'Registry host [env: MCP_MESH_REGISTRY_HOST]',
      default: 'localhost',
    })
    .option('registry-port', {
      type: 'number',
      describe: 'Registry port [env: MCP_MESH_REGISTRY_PORT]',
      default: 8000,
    })
    .option('json', { type: 'boolean', describe: 'Print machine-readable JSON' })
    .command(
      '$0',
      false,
      () => {},
      () => {
        failed = 'no command given; commands arrive in a later release (see meshctl --help)';
      },
    )
    .strict()
    .version(version)
    .alias('version', 'v')
    .help()
    .alias('help', 'h')
    .exitProcess(false)
    .fail((msg, err) => {
      failed = msg || err?.message;
    })
    .parseAsync();
  if (failed) {
    process.stderr.write(`Error: ${failed}\n`);
    process.exit(2);
  }
}

#!/usr/bin/env node
// The released `meshctl` binary (publishConfig.bin): compiled JavaScript, no
// TypeScript at run time. In the workspace, bin/meshctl.js runs the sources
// through tsx instead.
//
// `meshctl --version` loads nothing but the version (issue 35: it took 3.7 s
// on a loaded machine, loading every command, yargs and the database driver).
const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  const { meshctlVersion } = await import('./version.ts');
  process.stdout.write(`${meshctlVersion}\n`);
} else {
  const { main } = await import('./main.ts');
  await main(argv);
}

#!/usr/bin/env node
// Runs the pnpm version pinned in package.json's `packageManager`, so the
// README's commands, and every script and test that needs pnpm, work on a
// machine that has only Node and npm: a matching pnpm on the PATH is used as
// is, otherwise npx fetches the pinned one (into npm's cache, once).
//
//   node scripts/pnpm.mjs <pnpm arguments>          run it
//   import { pnpmCommand } from './pnpm.mjs'         [command, ...leading args] to spawn
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = new URL('..', import.meta.url);
const shell = process.platform === 'win32';

/** The pnpm version package.json pins (`packageManager`). */
export function pinnedPnpmVersion() {
  const { packageManager } = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));
  return packageManager.replace(/^pnpm@/, '').split('+')[0];
}

let resolved;
/**
 * How to run the pinned pnpm here: `['pnpm']` when the PATH has that version,
 * else `['npx', '--yes', 'pnpm@<version>']`. Append pnpm's arguments and spawn.
 */
export function pnpmCommand() {
  if (resolved) return resolved;
  const version = pinnedPnpmVersion();
  const onPath = spawnSync('pnpm', ['--version'], { encoding: 'utf8', shell });
  const found = onPath.status === 0 ? onPath.stdout.trim() : null;
  resolved = found === version ? ['pnpm'] : ['npx', '--yes', `pnpm@${version}`];
  return resolved;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [command, ...lead] = pnpmCommand();
  const result = spawnSync(command, [...lead, ...process.argv.slice(2)], {
    stdio: 'inherit',
    cwd: fileURLToPath(root),
    shell,
  });
  if (result.error) {
    console.error(`could not run pnpm ${pinnedPnpmVersion()}: ${result.error.message}`);
    process.exit(1);
  }
  process.exit(result.status ?? 1);
}

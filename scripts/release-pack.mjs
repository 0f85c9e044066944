#!/usr/bin/env node
// `pnpm release:pack [--out DIR] [--no-build] [--json]`: builds every package
// that leaves the repository and packs each into DIR (default
// `dist-release/<version>`) with a SHA256SUMS file, ready to publish. Refuses
// when the packages' versions disagree or a tarball holds anything but built
// output (dist/), package.json, README.md, LICENSE and, for @mesh/db, the
// migration SQL.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pnpmCommand } from './pnpm.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The published packages, dependencies first. */
export const releasePackages = [
  'packages/protocol',
  'packages/db',
  'packages/sdk',
  'apps/meshctl',
  'apps/registry',
];

const allowed = [
  /^package\/package\.json$/,
  /^package\/README\.md$/,
  /^package\/LICENSE$/,
  /^package\/dist\/.+\.(js|d\.ts|js\.map|d\.ts\.map)$/,
  // The dashboard bundle (apps/registry/scripts/build-ui.ts).
  /^package\/dist\/ui\/app\.(js|css)$/,
  /^package\/drizzle\/[^/]+\.(sql|json)$/,
  /^package\/drizzle\/meta\/[^/]+\.json$/,
];
const forbidden = /(\.test\.|\/src\/|tsconfig|\.tsbuildinfo)/;

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'Usage: pnpm release:pack [--out DIR] [--no-build] [--json]\n' +
      'Builds and packs @mesh/protocol, @mesh/db, @mesh/sdk, @mesh/meshctl and @mesh/registry\n' +
      'into DIR (default dist-release/<version>) with SHA256SUMS.\n',
  );
  process.exit(0);
}

const fail = (message) => {
  process.stderr.write(`release:pack: ${message}\n`);
  process.exit(1);
};
const run = (cmd, args, cwd = root) => {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status ?? r.signal}`;
    fail(`${cmd} ${args.join(' ')} failed in ${cwd} (${why}):\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  }
  return r.stdout;
};
/** The pinned pnpm (scripts/pnpm.mjs): no pnpm needs to be installed. */
const pnpm = (args, cwd) => {
  const [cmd, ...lead] = pnpmCommand();
  return run(cmd, [...lead, ...args], cwd);
};

const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'));
const version = readJson(join(root, 'package.json')).version;
for (const dir of releasePackages) {
  const pkg = readJson(join(root, dir, 'package.json'));
  if (pkg.version !== version) {
    fail(
      `${pkg.name} is at ${pkg.version} but the release is ${version} (root package.json): versions move together`,
    );
  }
}

const out = resolve(values.out ?? join(root, 'dist-release', version));
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

if (!values['no-build']) {
  if (!values.json) process.stderr.write('building (pnpm build)…\n');
  pnpm(['build']);
}

const tarballs = [];
for (const dir of releasePackages) {
  const cwd = join(root, dir);
  const packed = JSON.parse(pnpm(['pack', '--json', '--pack-destination', out], cwd));
  const file = packed.filename;
  const entries = run('tar', ['-tzf', file]).split('\n').filter(Boolean);
  const bad = entries.filter((e) => forbidden.test(e) || !allowed.some((a) => a.test(e)));
  if (bad.length > 0) fail(`${basename(file)} holds what a release must not: ${bad.join(', ')}`);
  for (const need of ['package/package.json', 'package/README.md', 'package/LICENSE']) {
    if (!entries.includes(need)) fail(`${basename(file)} lacks ${need.replace('package/', '')}`);
  }
  const manifest = JSON.parse(run('tar', ['-xzOf', file, 'package/package.json']));
  if (JSON.stringify(manifest).includes('workspace:') || JSON.stringify(manifest).includes('catalog:')) {
    fail(`${basename(file)}: package.json still holds a workspace: or catalog: range`);
  }
  const data = readFileSync(file);
  tarballs.push({
    name: packed.name,
    version: packed.version,
    file: basename(file),
    bytes: statSync(file).size,
    files: entries.length,
    sha256: createHash('sha256').update(data).digest('hex'),
  });
}

writeFileSync(join(out, 'SHA256SUMS'), tarballs.map((t) => `${t.sha256}  ${t.file}\n`).join(''));

if (values.json) {
  process.stdout.write(`${JSON.stringify({ version, out, tarballs }, null, 2)}\n`);
} else {
  process.stdout.write(`release ${version} in ${out}\n`);
  for (const t of tarballs) {
    process.stdout.write(
      `  ${t.file.padEnd(32)} ${(t.bytes / 1024).toFixed(1).padStart(7)} KiB  ${String(t.files).padStart(4)} files  sha256 ${t.sha256.slice(0, 16)}…\n`,
    );
  }
}

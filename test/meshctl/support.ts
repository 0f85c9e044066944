import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readBundledMigrations } from '@mesh/db';

/** This repository's meshctl executable (the same file `pnpm meshctl` runs). */
export const meshctlBin = fileURLToPath(new URL('../../apps/meshctl/bin/meshctl.js', import.meta.url));

export interface MeshctlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface MeshctlRun extends Promise<MeshctlResult> {
  pid: number;
  /** Everything written to stdout so far (for watching a long wait). */
  stdoutSoFar(): string;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Runs `meshctl <args>` as a child process, with no stdin and no TTY. The
 * environment is the test's minus any registry/admin settings, plus `env`.
 */
export function meshctl(
  args: string[],
  { env = {}, timeoutMs = 120_000 }: { env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): MeshctlRun {
  const base = { ...process.env };
  for (const k of [
    'MESH_REGISTRY_URL',
    'MESH_ADMIN_URL',
    'MESH_ADMIN_TOKEN',
    'MESH_ADMIN_TOKEN_FILE',
    'MESH_TOKEN',
    'MESH_TOKEN_FILE',
    'MESH_TRUST_FLEET_URLS',
    'MCP_MESH_REGISTRY_HOST',
    'MCP_MESH_REGISTRY_PORT',
    'DATABASE_URL',
    'FORCE_COLOR',
  ]) {
    delete base[k];
  }
  const child = spawn(process.execPath, [meshctlBin, ...args], {
    env: { ...base, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<MeshctlResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  }) as MeshctlRun;
  done.pid = child.pid as number;
  done.stdoutSoFar = () => stdout;
  done.kill = (signal = 'SIGTERM') => child.kill(signal);
  return done;
}

/**
 * The migrations this build bundles, as meshctl and the registry see them: the
 * binary's schema version (how many it knows), its newest migration's name, and
 * a migration "from a newer release" (the next idx, a name no build bundles)
 * for planting in the ledger.
 */
export function bundledSchema() {
  const bundled = readBundledMigrations();
  const version = bundled.length;
  return {
    bundled,
    names: bundled.map((m) => m.name),
    version,
    newest: bundled.at(-1)!.name,
    future: { idx: version, name: `${String(version).padStart(4, '0')}_from_the_future` },
  };
}

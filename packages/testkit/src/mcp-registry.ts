import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.ts';

/** The real MCP Mesh registry 3.7.1, from the optional dev dependency @mcpmesh/cli-linux-x64. */
export const mcpRegistryBin = fileURLToPath(
  new URL('../../../node_modules/@mcpmesh/cli-linux-x64/bin/mcp-mesh-registry', import.meta.url),
);

export interface McpRegistry {
  url: string;
  child: ChildProcess;
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Starts the real MCP Mesh registry 3.7.1 on a PostgreSQL database (it needs
 * `sslmode=disable`) and waits for `/health`. Throws, saying how to get it,
 * when the binary is missing (it is published for linux-x64 only).
 */
export async function startMcpRegistry(
  databaseUrl: string,
  env: Record<string, string> = {},
): Promise<McpRegistry> {
  if (!existsSync(mcpRegistryBin)) {
    throw new Error(
      `the MCP Mesh registry 3.7.1 is missing at ${mcpRegistryBin}: it comes with the optional dev dependency ` +
        '@mcpmesh/cli-linux-x64@3.7.1 (linux-x64 only); run pnpm install on linux-x64',
    );
  }
  const port = await freePort();
  const child = spawn(mcpRegistryBin, [], {
    env: {
      ...process.env,
      DATABASE_URL: `${databaseUrl}${databaseUrl.includes('?') ? '&' : '?'}sslmode=disable`,
      HOST: '127.0.0.1',
      PORT: String(port),
      MCP_MESH_LOG_LEVEL: 'ERROR',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mcp-mesh-registry exited: ${out}`);
    const ok = await fetch(`${url}/health`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`mcp-mesh-registry not healthy in 60 s: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    logs: () => out,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

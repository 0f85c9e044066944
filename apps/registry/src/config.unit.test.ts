import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';
import { connectionsWithinFileLimit, openFilesLimit } from './config-options.ts';

const run = async (argv: string[], env: Record<string, string> = {}) => {
  const outcome = await loadConfig(argv, env);
  if (outcome.kind !== 'run')
    throw new Error(`expected a config, got exit ${outcome.code}: ${outcome.output}`);
  return outcome.config;
};

const problems = async (argv: string[], env: Record<string, string> = {}) => {
  try {
    await loadConfig(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
};

describe('registry configuration', () => {
  it('has defaults that start a registry on :8000 with the embedded PostgreSQL', async () => {
    const config = await run([]);
    expect(config).toMatchObject({
      databaseUrl: undefined,
      host: '127.0.0.1',
      port: 8000,
      adminPort: undefined,
      logLevel: 'info',
      dbPoolSize: 20,
      dbJobPoolSize: 3,
      dbConnectTimeoutMs: 20_000,
    });
    expect(config.replicaId).toMatch(/-8000$/);
  });

  it("accepts MCP Mesh's environment names for the same settings", async () => {
    const config = await run([], {
      DATABASE_URL: 'postgres://u:p@db:5432/mesh?sslmode=disable',
      HOST: '0.0.0.0',
      PORT: '9000',
      MCP_MESH_ADMIN_PORT: '9001',
      REGISTRY_INSTANCE_ID: 'registry-pod-7',
      MCP_MESH_LOG_LEVEL: 'WARNING',
    });
    expect(config).toMatchObject({
      databaseUrl: 'postgres://u:p@db:5432/mesh?sslmode=disable',
      host: '0.0.0.0',
      port: 9000,
      adminPort: 9001,
      replicaId: 'registry-pod-7',
      logLevel: 'warn',
    });
  });

  it('prefers our variable over the MCP Mesh one, and flags over both', async () => {
    const env = { MESH_ADMIN_PORT: '7001', MCP_MESH_ADMIN_PORT: '7002', PORT: '7000' };
    expect((await run([], env)).adminPort).toBe(7001);
    const config = await run(['--admin-port', '7101', '-p', '7100', '--log-level', 'CRITICAL'], env);
    expect(config).toMatchObject({ adminPort: 7101, port: 7100, logLevel: 'fatal' });
  });

  it('treats an admin port of 0 as disabled, as MCP Mesh does', async () => {
    expect((await run([], { MCP_MESH_ADMIN_PORT: '0' })).adminPort).toBeUndefined();
  });

  it('parses durations as Go durations or seconds', async () => {
    const config = await run(['--db-connect-timeout', '1m30s', '--shutdown-timeout', '2.5'], {
      MESH_MIGRATION_LOCK_TIMEOUT: '500ms',
    });
    expect(config).toMatchObject({
      dbConnectTimeoutMs: 90_000,
      shutdownTimeoutMs: 2_500,
      migrationLockTimeoutMs: 500,
    });
  });

  it('reports every invalid setting at once, naming where it came from', async () => {
    const list = await problems(['--port', 'eighty'], {
      DATABASE_URL: 'mcp_mesh_registry.db',
      MESH_LOG_LEVEL: 'loud',
      MESH_DB_POOL_SIZE: '0',
      MESH_DB_CONNECT_TIMEOUT: 'soon',
      MESH_REPLICA_ID: 'has spaces',
    });
    expect(list).toEqual([
      expect.stringMatching(/^DATABASE_URL: must be a PostgreSQL URL .*SQLite is not supported/),
      '--port: must be a TCP port (an integer from 0 to 65535), got "eighty"',
      expect.stringMatching(/^MESH_REPLICA_ID: must be 1-128 letters/),
      expect.stringMatching(/^MESH_LOG_LEVEL: must be one of trace, debug/),
      expect.stringMatching(/^MESH_DB_POOL_SIZE: must be a pool size/),
      expect.stringMatching(/^MESH_DB_CONNECT_TIMEOUT: must be a duration/),
    ]);
  });

  it('rejects out-of-range ports and an admin port equal to the main port', async () => {
    expect(await problems([], { PORT: '70000' })).toEqual([
      'PORT: must be a TCP port (an integer from 0 to 65535), got "70000"',
    ]);
    expect(await problems(['--port', '8000', '--admin-port', '8000'])).toEqual([
      '--admin-port: must differ from the main port (8000)',
    ]);
  });

  it('answers unknown flags with a usage error (exit 2) and --help with exit 0', async () => {
    const unknown = await loadConfig(['--prot', '80'], {});
    expect(unknown).toMatchObject({ kind: 'exit', code: 2 });
    expect(unknown.kind === 'exit' && unknown.output).toMatch(/Unknown argument: prot/);
    const help = await loadConfig(['--help'], {});
    expect(help).toMatchObject({ kind: 'exit', code: 0 });
    expect(help.kind === 'exit' && help.output).toMatch(/--database-url[\s\S]*DATABASE_URL/);
  });

  it('reads --cancel-forward as any, off or a CIDR list, and shows it in --help', async () => {
    expect((await run([])).cancelForward).toEqual({ kind: 'any' });
    expect((await run(['--cancel-forward', 'off'])).cancelForward).toEqual({ kind: 'off' });
    expect((await run([], { MESH_CANCEL_FORWARD: '10.0.0.0/8, fd00::/8' })).cancelForward).toEqual({
      kind: 'cidrs',
      cidrs: ['10.0.0.0/8', 'fd00::/8'],
    });
    expect(await problems(['--cancel-forward', '10.0.0.0/33'])).toEqual([
      '--cancel-forward: must be any, off or a comma-separated list of CIDRs (not a CIDR: "10.0.0.0/33"), got "10.0.0.0/33"',
    ]);
    const help = await loadConfig(['--help'], {});
    expect(help.kind === 'exit' && help.output).toMatch(/--cancel-forward[\s\S]*MESH_CANCEL_FORWARD/);
  });

  it('refuses durations that no timer or int4 of milliseconds holds (issue 18)', async () => {
    expect(await problems(['--agent-timeout', '30d', '--sweep-interval', '25d'])).toEqual([
      '--sweep-interval: must be at most 24d20h31m23s (2147483647 ms, the longest timer), got "25d"',
      '--agent-timeout: must be at most 24d20h31m23s (2147483647 ms, the longest timer), got "30d"',
    ]);
    expect((await run(['--agent-timeout', '24d'])).agentTimeoutMs).toBe(24 * 86_400_000);
    expect((await run(['--job-retention', '365d'])).jobRetentionMs).toBe(365 * 86_400_000);
    expect(await problems(['--job-retention', '4000d'])).toEqual([
      '--job-retention: must be at most 3650d, got "4000d"',
    ]);
  });

  it('bounds main-port connections by default below the file limit (256 kept for pools, admin port and files)', async () => {
    expect(connectionsWithinFileLimit(20_000)).toBe(19_744);
    expect(connectionsWithinFileLimit(1_024)).toBe(768);
    expect(connectionsWithinFileLimit(200)).toBe(64);
    expect(connectionsWithinFileLimit(undefined)).toBe(0);
    const limit = openFilesLimit();
    expect((await run([])).maxConnections).toBe(connectionsWithinFileLimit(limit));
    expect((await run(['--max-connections', '0'])).maxConnections).toBe(0);
  });
});

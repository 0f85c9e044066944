export type { TestDatabase } from './databases.ts';
export { createDatabase, prepareTemplate, templateDatabase, withDatabase } from './databases.ts';
export type { McpRegistry } from './mcp-registry.ts';
export { mcpRegistryBin, startMcpRegistry } from './mcp-registry.ts';
export { freePort } from './ports.ts';
export type { TestPostgres } from './postgres.ts';
export { startTestPostgres } from './postgres.ts';
export type { Exit, RegistryProcess, RunResult, SpawnRegistryOptions } from './registry-process.ts';
export { registryBin, runRegistry, spawnRegistry, stopAllRegistries } from './registry-process.ts';
export type { InstalledRelease } from './releases.ts';
export {
  installedRelease,
  installTarballs,
  keptReleases,
  packWorkspace,
  releasesDir,
  repoRoot,
  verifiedTarballs,
} from './releases.ts';
export type { CutMode, Direction, TcpProxy } from './tcp-proxy.ts';
export { startTcpProxy } from './tcp-proxy.ts';
export { adminUrl, useTestDatabase } from './vitest-helpers.ts';

export type { App, AppDeps, AppEnv, Identity, Readiness, Surface } from './app.ts';
export { createApp } from './app.ts';
export type { RegistryConfig } from './config.ts';
export { ConfigError, loadConfig } from './config.ts';
export { ApiError } from './errors.ts';
export { createLogger } from './logger.ts';
export type { RunningRegistry } from './server.ts';
export { startRegistry } from './server.ts';
export { registryVersion } from './version.ts';

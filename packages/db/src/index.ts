export type { DbOptions, Sql } from './client.ts';
export { createDb } from './client.ts';
export type { EmbeddedOptions, EmbeddedPostgres } from './embedded.ts';
export { startEmbeddedPostgres } from './embedded.ts';
export type {
  AppliedMigration,
  MigrateOptions,
  MigrateResult,
  SchemaErrorKind,
  SchemaStatus,
} from './migrate.ts';
export {
  ledgerTable,
  migrate,
  migrationLockKey,
  SchemaError,
  schemaStatus,
} from './migrate.ts';
export type { BundledMigration } from './migrations.ts';
export { describeVersion, migrationsDir, readBundledMigrations } from './migrations.ts';
export * from './schema.ts';
export { registryTables } from './tables.ts';

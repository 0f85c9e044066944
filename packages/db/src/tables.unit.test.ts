import { getTableName, is } from 'drizzle-orm';
import { PgTable } from 'drizzle-orm/pg-core';
import { describe, expect, it } from 'vitest';
import * as schema from './schema.ts';
import { registryTables } from './tables.ts';

describe('registryTables', () => {
  it('lists every table of schema.ts once', () => {
    const names = (Object.values(schema) as unknown[])
      .filter((v): v is PgTable => is(v, PgTable))
      .map((t) => getTableName(t));
    expect([...registryTables].sort()).toEqual(names.sort());
  });

  it('puts every parent before the tables that reference it', () => {
    const at = (t: string) => registryTables.indexOf(t);
    expect(at('jobs')).toBeLessThan(at('job_events'));
    expect(at('agents')).toBeLessThan(at('agent_capabilities'));
  });
});

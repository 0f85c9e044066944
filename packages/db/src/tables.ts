import { getTableName, is } from 'drizzle-orm';
import { getTableConfig, PgTable } from 'drizzle-orm/pg-core';
import * as schema from './schema.ts';

/**
 * Every table of schema.ts, parents before the tables whose foreign keys point
 * at them: the order to insert into, and the reverse order to delete from.
 * Derived from the schema itself, so a table added there is included in
 * `meshctl db snapshot|restore` without anyone updating a list.
 *
 * @example
 *   registryTables; // ['agents', 'agent_capabilities', 'jobs', 'job_events', …]
 */
export const registryTables: readonly string[] = (() => {
  const tables = (Object.values(schema) as unknown[]).filter((v): v is PgTable => is(v, PgTable));
  const parents = new Map(
    tables.map((t) => [
      getTableName(t),
      getTableConfig(t)
        .foreignKeys.map((fk) => getTableName(fk.reference().foreignTable))
        .filter((p) => p !== getTableName(t)),
    ]),
  );
  const ordered: string[] = [];
  const visit = (name: string, path: string[]) => {
    if (ordered.includes(name)) return;
    if (path.includes(name)) throw new Error(`foreign keys form a cycle: ${[...path, name].join(' -> ')}`);
    for (const p of parents.get(name) ?? []) visit(p, [...path, name]);
    ordered.push(name);
  };
  for (const name of [...parents.keys()].sort()) visit(name, []);
  return ordered;
})();

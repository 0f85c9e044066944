// What PostgreSQL's catalog says about a table: whether it exists, its
// columns (generated? identity sequence?) and its primary key. Snapshots are
// taken and restored by these answers, never by a table merely named in a file.

import type { Sql } from '@mesh/db';

/** Transaction handles are used through the pool's interface (same methods). */
export type Tx = Sql;

export const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Tables of `names` that exist (in the search path), in the given order. */
export async function existingTables(sql: Tx, names: readonly string[]): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select n as name from unnest(${names as string[]}::text[]) as n where to_regclass(quote_ident(n)) is not null`;
  const present = new Set(rows.map((r) => r.name));
  return names.filter((n) => present.has(n));
}

export interface Column {
  name: string;
  generated: boolean;
  sequence: string | null;
}

export async function columnsOf(sql: Tx, table: string): Promise<Column[]> {
  const rows = await sql<{ name: string; generated: string; sequence: string | null }[]>`
    select a.attname as name, a.attgenerated as generated,
           pg_get_serial_sequence(quote_ident(${table}), a.attname) as sequence
    from pg_attribute a
    where a.attrelid = to_regclass(quote_ident(${table})) and a.attnum > 0 and not a.attisdropped
    order by a.attnum`;
  return rows.map((r) => ({ name: r.name, generated: r.generated !== '', sequence: r.sequence }));
}

export async function primaryKey(sql: Tx, table: string): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select a.attname as name
    from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
    where i.indrelid = to_regclass(quote_ident(${table})) and i.indisprimary
    order by array_position(i.indkey::int2[], a.attnum)`;
  return rows.map((r) => r.name);
}

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { ledgerTable, registryTables } from '@mesh/db';
import { spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshctl } from './support.ts';

// Issue 18 item 5: `meshctl db restore` trusted a crafted snapshot. A changed
// ledger hash restored cleanly and left a database no registry starts on; a
// replica row seen "in 2099" stayed live for ever.

const db = useTestDatabase();
const dir = mkdtempSync(join(tmpdir(), 'meshctl-crafted-'));
let sql: postgres.Sql;
beforeAll(async () => {
  sql = postgres(db.url, { max: 2, onnotice: () => {} });
  // A real registry writes its replica row, then stops (restore refuses while it runs).
  const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'crafted-1' });
  await r.stop();
  const snap = await dbctl(['snapshot', '--dir', dir, '--name', 'honest']);
  expect(snap.code, snap.stderr).toBe(0);
});
afterAll(async () => {
  await sql?.end({ timeout: 5 });
  rmSync(dir, { recursive: true, force: true });
});

const dbctl = (args: string[]) => meshctl(['db', ...args], { env: { DATABASE_URL: db.url } });

async function contents(): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const t of [ledgerTable, ...registryTables]) {
    const rows = await sql.unsafe(`select row_to_json(t)::text as r from "${t}" t order by 1`);
    out[t] = rows.map((r) => r.r as string);
  }
  return out;
}

/**
 * Writes `<name>.jsonl.gz`: the honest snapshot with `edit` applied to each
 * line (the header is line 0; `table` is the table the row belongs to).
 */
function craft(name: string, edit: (line: string, table: string | null, index: number) => string): void {
  const lines = gunzipSync(readFileSync(join(dir, 'honest.jsonl.gz')))
    .toString('utf8')
    .split('\n');
  let table: string | null = null;
  const out = lines.map((line, i) => {
    if (i > 0 && line.startsWith('{"mesh_snapshot_table"')) {
      table = (JSON.parse(line) as { mesh_snapshot_table: string }).mesh_snapshot_table;
      return line;
    }
    return edit(line, i === 0 ? null : table, i);
  });
  writeFileSync(join(dir, `${name}.jsonl.gz`), gzipSync(out.join('\n')));
}

const isRow = (line: string) => line.startsWith('{') && !line.startsWith('{"mesh_snapshot_');

describe('meshctl db restore refuses a crafted snapshot', () => {
  it('a ledger row whose hash differs from the header: exit 1, named, nothing changed, even with --force', async () => {
    craft('ledger-hash', (line, table) => {
      if (table !== ledgerTable || !isRow(line)) return line;
      const row = JSON.parse(line) as { name: string; hash: string; idx: number };
      return row.idx === 0 ? JSON.stringify({ ...row, hash: 'f'.repeat(64) }) : line;
    });
    await sql`update agents set name = 'after the snapshot'`;
    const before = await contents();
    for (const extra of [[], ['--force']]) {
      const res = await dbctl(['restore', 'ledger-hash', '--dir', dir, ...extra]);
      expect(res.code, res.stderr).toBe(1);
      expect(res.stderr).toContain('refusing to restore');
      expect(res.stderr).toContain('contradict themselves');
      expect(res.stderr).toMatch(
        /migration 0000_\w+: the header says .* the mesh_schema_migrations row says .*ffffffffffff/,
      );
      expect(res.stderr).toContain('--force does not override this');
      expect(await contents()).toEqual(before);
    }
  });

  it('a header and ledger that agree with each other but not with the migrations this meshctl bundles', async () => {
    const fake = 'a'.repeat(64);
    craft('both-hash', (line, table, i) => {
      if (i === 0) {
        const header = JSON.parse(line) as { schema: { migrations: { idx: number; hash: string }[] } };
        for (const m of header.schema.migrations) if (m.idx === 0) m.hash = fake;
        return JSON.stringify(header);
      }
      if (table !== ledgerTable || !isRow(line)) return line;
      const row = JSON.parse(line) as { idx: number };
      return row.idx === 0 ? JSON.stringify({ ...row, hash: fake }) : line;
    });
    const before = await contents();
    const res = await dbctl(['restore', 'both-hash', '--dir', dir, '--force']);
    expect(res.code, res.stderr).toBe(1);
    expect(res.stderr).toMatch(/is recorded as 0000_\w+ \(idx 0, sha256 aaaaaaaaaaaa…\) but this meshctl's/);
    expect(await contents()).toEqual(before);
    // The registry still starts on the database: nothing of the file reached the ledger.
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'crafted-2' });
    await r.stop();
  });

  it('a registry_replicas row seen in 2099: refused (it would stay live for ever), nothing changed', async () => {
    craft('future-replica', (line, table) => {
      if (table !== 'registry_replicas' || !isRow(line)) return line;
      return JSON.stringify({ ...JSON.parse(line), last_seen_at: '2099-01-01T00:00:00+00:00' });
    });
    const before = await contents();
    const res = await dbctl(['restore', 'future-replica', '--dir', dir, '--force']);
    expect(res.code, res.stderr).toBe(1);
    expect(res.stderr).toMatch(
      /replica crafted-1: last_seen_at 2099-01-01T00:00:00\+00:00 is after the snapshot was taken/,
    );
    expect(await contents()).toEqual(before);
  });

  it('a snapshot from a server whose clock is ahead: restored, the replica row clamped to now (not live for ever)', async () => {
    // Consistent with itself (taken "in 2099"), but ahead of this database's clock.
    craft('clock-ahead', (line, table, i) => {
      if (i === 0) return JSON.stringify({ ...JSON.parse(line), created_at: '2099-01-01T00:00:30.000Z' });
      if (table !== 'registry_replicas' || !isRow(line)) return line;
      return JSON.stringify({ ...JSON.parse(line), last_seen_at: '2099-01-01T00:00:00+00:00' });
    });
    const res = await dbctl(['restore', 'clock-ahead', '--dir', dir]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain(
      "registry_replicas: crafted-1 were seen after this database's clock; set to now",
    );
    const [row] = await sql<{ ahead: boolean }[]>`
      select last_seen_at > now() as ahead from registry_replicas where replica_id = 'crafted-1'`;
    expect(row?.ahead).toBe(false);
  });

  it('the honest snapshot restores (exit 0)', async () => {
    const res = await dbctl(['restore', 'honest', '--dir', dir, '--json']);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ name: 'honest', ledger_restored: true, forced: [] });
  });
});

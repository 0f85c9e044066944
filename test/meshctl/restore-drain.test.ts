import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { meshctl } from './support.ts';

const db = useTestDatabase();
const dir = mkdtempSync(join(tmpdir(), 'meshctl-restore-drain-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const dbctl = (args: string[]) => meshctl(['db', ...args, '--dir', dir], { env: { DATABASE_URL: db.url } });

describe('meshctl db restore and the fleet drain (issue 20)', () => {
  it('keeps a fleet drain in force across a restore unless --reset-drain, and says so', async () => {
    // A snapshot taken before the drain.
    expect((await dbctl(['snapshot', '--name', 'before-drain'])).code).toBe(0);
    // Drain the fleet (persisted), stop the replica: the documented breaking-upgrade path.
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'restore-a' });
    const drain = await meshctl(['registry', 'drain', '--all', '--persist', '--registry-url', r.url]);
    expect(drain.code).toBe(0);
    expect((await r.stop()).code).toBe(0);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    const fleetDrain = async () =>
      (
        await sql<{ draining: boolean }[]>`
        select coalesce((select (value->>'draining')::boolean from registry_settings where key = 'fleet_drain'), false) as draining`
      )[0]?.draining;
    try {
      expect(await fleetDrain()).toBe(true);

      const kept = await dbctl(['restore', 'before-drain']);
      expect(kept.code).toBe(0);
      expect(kept.stdout).toMatch(
        /Fleet drain: kept as it was, in force \(since .+\) \(the snapshot's: off; --reset-drain takes the snapshot's\)/,
      );
      expect(kept.stdout).toContain(
        'Jobs that finished after the snapshot was taken are back in their earlier state and run again.',
      );
      expect(await fleetDrain()).toBe(true);
      // A replica started now comes up draining.
      const again = await spawnRegistry({ databaseUrl: db.url, replicaId: 'restore-a' });
      const status = await (await fetch(`${again.url}/admin/drain`)).json();
      expect(status).toMatchObject({ draining: true, fleet_draining: true });
      await again.stop();

      const json = await dbctl(['restore', 'before-drain', '--json', '--reset-drain']);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout).fleet_drain).toMatchObject({
        kept: false,
        before: { draining: true },
        snapshot: { draining: false },
        after: { draining: false },
      });
      expect(json.stderr).toMatch(
        /--reset-drain: the fleet drain went from in force .* to the snapshot's, off/,
      );
      expect(await fleetDrain()).toBe(false);
    } finally {
      await sql.end();
    }
  }, 120_000);
});

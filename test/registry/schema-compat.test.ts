import { ledgerTable, readBundledMigrations } from '@mesh/db';
import { readySchema } from '@mesh/protocol';
import { registryVersion } from '@mesh/registry';
import { runRegistry, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * A newer release's migrations under this binary (DESIGN.md §4.8), written to
 * the ledger as the newer release records them. The cross-release version of
 * these checks (released 0.1.0 on 0.2.0's schema) is in test/upgrade/.
 */
describe('a database ahead of this binary', () => {
  const db = useTestDatabase();
  let sql: postgres.Sql;
  afterAll(async () => {
    await sql?.end();
  });
  const next = readBundledMigrations().length;
  const connect = () => {
    sql ??= postgres(db.url, { max: 2, onnotice: () => {} });
    return sql;
  };
  const addMigration = (name: string, idx: number, compatibility: string | null, oldest: string | null) =>
    connect()`insert into ${sql(ledgerTable)} (name, idx, hash, applied_by, compatibility, release, oldest_compatible, reason)
              values (${name}, ${idx}, 'f00d', 'a newer registry', ${compatibility}, '9.0.0', ${oldest},
                      ${`what ${name} changes`})`;

  it('starts on a newer schema whose unknown migrations are all compatible, and logs why that is safe', async () => {
    await addMigration(`${String(next).padStart(4, '0')}_newer_index`, next, 'compatible', null);
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'old-compatible' });
    const ready = readySchema.parse(await (await fetch(`${r.url}/ready`)).json());
    expect(ready).toMatchObject({ status: 'ready', checks: { schema: 'compatible' } });
    const ahead = r
      .logRecords()
      .find((l) => String(l.msg).startsWith('the database is ahead of this binary'));
    expect(ahead?.msg).toContain(`is declared compatible with release ${registryVersion}`);
    const submit = await fetch(`${r.url}/jobs`, {
      method: 'POST',
      body: JSON.stringify({ capability: 'c', submitted_by: 't', submitted_payload: {} }),
    });
    expect(submit.status).toBe(201);
    await r.stop();
  });

  it('a running replica that sees a breaking migration applied under it turns not ready and refuses writes', async () => {
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'old-running',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    });
    expect((await fetch(`${r.url}/ready`)).status).toBe(200);
    const name = `${String(next + 1).padStart(4, '0')}_drop_something`;
    await addMigration(name, next + 1, 'breaking', '9.0.0');
    let res: Response;
    const deadline = Date.now() + 20_000;
    do {
      await new Promise((w) => setTimeout(w, 100));
      res = await fetch(`${r.url}/ready`);
    } while (res.status === 200 && Date.now() < deadline);
    expect(res.status).toBe(503);
    const body = readySchema.parse(await res.json());
    expect(body.checks.schema).toBe('incompatible');
    expect(body.checks.reason).toContain(
      `migration ${name} was applied under this replica and is breaking for release ${registryVersion}`,
    );
    expect(body.checks.reason).toContain('release 9.0.0 or newer');
    const claim = await fetch(`${r.url}/jobs/claim`, {
      method: 'POST',
      body: JSON.stringify({ capability: 'c', instance_id: 'w1' }),
    });
    expect(claim.status).toBe(503);
    expect(await claim.json()).toMatchObject({ code: 'not_ready' });
    expect((await fetch(`${r.url}/health`)).status).toBe(200);
    const stopped = await r.stop();
    expect(stopped.code).toBe(0);

    // And it cannot come back: restarted, it refuses with exit 3, naming what it needs.
    const again = await runRegistry({ databaseUrl: db.url, replicaId: 'old-running', timeoutMs: 30_000 });
    expect(again.code).toBe(3);
    expect(again.output).toContain(`migration ${name} is breaking for it (what ${name} changes)`);
    expect(again.output).toContain('run release 9.0.0 or newer');
  });
});

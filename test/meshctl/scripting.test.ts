import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnRegistry, startTcpProxy, useTestDatabase } from '@mesh/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { call } from '../support/http.ts';
import { meshctl, meshctlBin } from './support.ts';

const db = useTestDatabase();
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** Issue 20: meshctl in scripts. */
describe('meshctl scripts cleanly (real registry, real PostgreSQL)', () => {
  it('--json prints one JSON document and nothing else on stdout, for every command that has output', async () => {
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'json-a',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    });
    const url = ['--registry-url', r.url];
    const snapshots = mkdtempSync(join(tmpdir(), 'meshctl-json-'));
    cleanups.push(() => rmSync(snapshots, { recursive: true, force: true }));
    const dbEnv = { DATABASE_URL: db.url, MESH_SNAPSHOT_DIR: snapshots };
    await call(r.url, 'POST', '/heartbeat', {
      agent_id: 'json-agent',
      name: 'json-agent',
      tools: [{ function_name: 'f', capability: 'json-cap' }],
    });
    const job = (
      await call(r.url, 'POST', '/jobs', { capability: 'json-cap', submitted_by: 't', submitted_payload: {} })
    ).body.id as string;
    const commands: string[][] = [
      ['registry', 'status'],
      ['registry', 'status', '--all'],
      ['registry', 'replicas'],
      ['registry', 'drain'],
      ['registry', 'drain', '--wait'],
      ['registry', 'resume'],
      ['registry', 'drain', '--all'],
      ['registry', 'drain', '--all', '--wait'],
      ['registry', 'drain', '--all', '--persist'],
      ['registry', 'drain', '--all', '--persist', '--wait'],
      ['registry', 'resume', '--all'],
      ['list'],
      ['status', 'json-agent'],
      ['job', 'list'],
      ['job', 'status', job],
      ['job', 'events', job],
      ['job', 'submit', 'json-cap', '--payload', '{"a":1}'],
      ['job', 'cancel', job],
      ['doctor', '--sweep-interval', '1h'],
      ['upgrade', 'check', '--to', '0.2.0'],
      ['upgrade', 'verify'],
      ['db', 'status'],
      ['db', 'snapshots'],
    ];
    const failures: string[] = [];
    for (const args of commands) {
      const res = await meshctl([...args, ...url, '--json'], { env: dbEnv });
      try {
        JSON.parse(res.stdout);
      } catch {
        failures.push(
          `meshctl ${args.join(' ')} --json (exit ${res.code}): stdout is not one JSON document:\n${res.stdout}\n${res.stderr}`,
        );
      }
    }
    expect(failures).toEqual([]);
  }, 300_000);

  it('a closed pipe ends quietly with exit 0 (meshctl registry replicas | head -1)', async () => {
    const r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'pipe-a' });
    // Many lines, so the reader has closed the pipe before meshctl is done writing.
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        'bash',
        [
          '-o',
          'pipefail',
          '-c',
          `"${process.execPath}" "${meshctlBin}" registry replicas --registry-url ${r.url} | head -c 1 >/dev/null; ` +
            `"${process.execPath}" "${meshctlBin}" job list --registry-url ${r.url} --json | head -c 1`,
        ],
        { env: { ...process.env, NO_COLOR: '1' } },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
      );
    });
    expect(out.stderr).not.toMatch(/EPIPE|Unhandled|at .+:\d+:\d+/);
    expect(out.code).toBe(0);
  }, 60_000);

  it('"registry up, database down" is its own message and exit code (3) for every command', async () => {
    const proxy = await startTcpProxy(Number(new URL(db.url).port));
    cleanups.push(() => proxy.close());
    const r = await spawnRegistry({
      databaseUrl: proxy.via(db.url),
      replicaId: 'dbdown-a',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    });
    proxy.cut('refuse');
    const url = ['--registry-url', r.url];
    for (const args of [
      ['registry', 'replicas'],
      ['registry', 'status', '--all'],
      ['job', 'list'],
      ['list'],
    ]) {
      const started = performance.now();
      const res = await meshctl([...args, ...url]);
      const ms = Math.round(performance.now() - started);
      console.log(`meshctl ${args.join(' ')} with the database down: exit ${res.code} in ${ms} ms`);
      expect(res.stderr).toContain('is up but its database is unavailable');
      expect(res.stderr).not.toContain('Is it running?');
      expect(res.code).toBe(3);
    }
    // What needs no database still answers, saying what is stale.
    const status = await meshctl(['registry', 'status', ...url]);
    expect(status.code).toBe(0);
    expect(status.stderr).toContain('database is unavailable: live claims are from its last read');
    // No live claim was read last, but the count is stale: --wait must not call it safe.
    const wait = await meshctl(['registry', 'drain', '--wait', '--wait-timeout', '3', ...url]);
    expect(wait.code).toBe(1);
    expect(wait.stdout).toMatch(
      /Live claims: 0 · database unreachable at dbdown-a; counts from [\d.]+s ago · \d+s elapsed/,
    );
    expect(wait.stderr).toContain('timed out after 3s');
    proxy.restore();
  }, 120_000);
});

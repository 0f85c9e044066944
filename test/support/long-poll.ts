import { headers } from '@mesh/protocol';
import { type RegistryProcess, spawnRegistry, type TestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { afterAll, beforeAll, expect } from 'vitest';
import { call } from './http.ts';
import { until } from './until.ts';

/**
 * What the long-poll claim tests share (issue 17 item 1): two registry
 * replicas over the file's database, raw claims that keep the
 * `X-Mesh-Draining` header, and each replica's `mesh_parked_claims`.
 */

/** Long enough that an answer with a job cannot be the wait's end (each test's timeout is shorter). */
export const longWait = 60_000;

/** Who owns a job, its attempts, its status. */
export interface JobOwnerRow {
  owner_instance_id: string | null;
  attempt_count: number;
  status: string;
}

export interface ReplicaPair {
  /** Replica `<prefix>-a`: filled in before the file's first test, as `useTestDatabase` fills its database. */
  a: RegistryProcess;
  /** Replica `<prefix>-b`. */
  b: RegistryProcess;
  /** A client of the same database (set before the first test). */
  sql: postgres.Sql;
  /** A job's row, read straight from the database. */
  row(id: string): Promise<JobOwnerRow | undefined>;
  /** A capability of its own for each test: `<prefix>-1`, `<prefix>-2`, … */
  capability(): string;
}

/**
 * Two registry replicas, `<prefix>-a` and `<prefix>-b`, with `env`, over
 * `db`: started before the file's tests, stopped after them.
 *
 * @example const { a, b, row, capability } = useReplicaPair(db, 'lp', { MESH_REPLICA_HEARTBEAT: '200ms' });
 */
export function useReplicaPair(db: TestDatabase, prefix: string, env: Record<string, string>): ReplicaPair {
  let n = 0;
  const pair: ReplicaPair = {
    a: {} as RegistryProcess,
    b: {} as RegistryProcess,
    sql: undefined as unknown as postgres.Sql,
    row: async (id) =>
      (
        await pair.sql<JobOwnerRow[]>`
          select owner_instance_id, attempt_count, status from jobs where id = ${id}`
      )[0],
    capability: () => `${prefix}-${++n}`,
  };
  beforeAll(async () => {
    const [a, b] = await Promise.all([
      spawnRegistry({ databaseUrl: db.url, replicaId: `${prefix}-a`, env }),
      spawnRegistry({ databaseUrl: db.url, replicaId: `${prefix}-b`, env }),
    ]);
    Object.assign(pair.a, a);
    Object.assign(pair.b, b);
    pair.sql = postgres(db.url, { max: 2, onnotice: () => {} });
  }, 60_000);
  afterAll(async () => {
    await Promise.all([pair.a.stop?.(), pair.b.stop?.()]);
    await pair.sql?.end();
  });
  return pair;
}

/** Submits a job of `cap` through `r`; its id. */
export const submit = (r: RegistryProcess, cap: string) =>
  call(r.url, 'POST', '/jobs', { capability: cap, submitted_by: 't', submitted_payload: {} }).then((x) => {
    expect(x.status).toBe(201);
    return x.body.id as string;
  });

/** A raw claim, with the response's headers (for `X-Mesh-Draining`). */
export async function claim(r: RegistryProcess, body: Record<string, unknown>, signal?: AbortSignal) {
  const res = await fetch(`${r.url}/jobs/claim`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
  return {
    status: res.status,
    draining: res.headers.get(headers.draining),
    // biome-ignore lint/suspicious/noExplicitAny: wire bodies
    body: (await res.json()) as any,
  };
}

/** `mesh_parked_claims` of a replica. */
export async function parked(r: RegistryProcess): Promise<number> {
  const text = await (await fetch(`${r.url}/metrics`)).text();
  return Number(/^mesh_parked_claims (\d+)$/m.exec(text)?.[1] ?? Number.NaN);
}

/** Until `count` claims are parked on `r`. */
export const untilParked = (r: RegistryProcess, count: number) =>
  until(`${count} claim(s) parked on ${r.replicaId}`, async () => (await parked(r)) === count);

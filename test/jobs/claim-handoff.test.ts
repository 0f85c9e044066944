import { createDb } from '@mesh/db';
import { createLogger } from '@mesh/registry';
import { useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClaimWaiters } from '../../apps/registry/src/services/claim-waiters.ts';
import { DrainGate } from '../../apps/registry/src/services/drain.ts';
import { JobStore, type NewJob } from '../../apps/registry/src/services/jobs.ts';
import { call } from '../support/http.ts';
import { claim, longWait, submit, untilParked, useReplicaPair } from '../support/long-poll.ts';

/**
 * A job submitted on the replica where a long-poll claim of its capability is
 * parked is handed to that claim in the submission's own statement: inserted
 * already claimed (first attempt, epoch 1), one commit for submission and
 * claim (issue 17 item 1, pickup). Real PostgreSQL throughout: registry
 * processes for what a client sees, and the services in this process where
 * a test must hold the insert in the middle (client gone, drain).
 */
const db = useTestDatabase();
const replicas = useReplicaPair(db, 'ho', { MESH_REPLICA_HEARTBEAT: '200ms' });
const { a, b, capability } = replicas;

async function metric(url: string, re: RegExp): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(re.exec(text)?.[1] ?? Number.NaN);
}
const handoffs = (url: string) => metric(url, /^mesh_claim_handoffs_total (\S+)$/m);
const claimStatements = (url: string) =>
  metric(url, /^mesh_coalesced_statements_total\{kind="claim"\} (\S+)$/m);

interface ClaimRow {
  owner_instance_id: string | null;
  attempt_count: number;
  claim_epoch: number;
  status: string;
  claimed_by_replica: string | null;
  lease_expires_at: Date | null;
}
const claimRow = async (id: string) =>
  (
    await replicas.sql<ClaimRow[]>`
      select owner_instance_id, attempt_count, claim_epoch::int as claim_epoch, status, claimed_by_replica, lease_expires_at
      from jobs where id = ${id}`
  )[0];

describe('a submission handed to a claim parked on its replica', () => {
  it('answers the parked claim with the job, claimed in the submission statement, as a claim would leave it', async () => {
    const cap = capability();
    const parkedClaim = claim(a, { capability: cap, instance_id: 'w-ho', wait_ms: longWait });
    await untilParked(a, 1);
    const [handedBefore, statementsBefore] = [await handoffs(a.url), await claimStatements(a.url)];

    const submitted = await call(a.url, 'POST', '/jobs', {
      capability: cap,
      submitted_by: 't',
      submitted_payload: { n: 1, text: 'hi' },
      max_duration: 30,
    });
    expect(submitted.status).toBe(201);
    // Answered as a queued job: the submitter did not push it to anyone.
    expect(submitted.body).toEqual({ id: submitted.body.id, status: 'working', owner_instance_id: null });
    const got = await parkedClaim;
    expect(got.body.claimed).toHaveLength(1);
    const job = got.body.claimed[0];
    expect(job).toMatchObject({
      id: submitted.body.id,
      submitted_payload: { n: 1, text: 'hi' },
      attempt_count: 1,
      claim_epoch: 1,
      max_duration: 30,
      recv_cursor: null,
      total_deadline: null,
    });
    const row = await claimRow(job.id);
    expect(row).toMatchObject({
      owner_instance_id: 'w-ho',
      attempt_count: 1,
      claim_epoch: 1,
      status: 'working',
      claimed_by_replica: 'ho-a',
    });
    // The lease is the claim's (max_duration from the database clock), and the answer says the same.
    expect(Math.abs(job.lease_expires_at - (row?.lease_expires_at?.getTime() ?? 0) / 1000)).toBeLessThan(1);
    expect(await handoffs(a.url)).toBe(handedBefore + 1);
    expect(await claimStatements(a.url)).toBe(statementsBefore);

    // It is fenced like any claim: the epoch it was handed completes it.
    const done = await call(a.url, 'POST', '/jobs/batch', {
      instance_id: 'w-ho',
      deltas: [{ id: job.id, claim_epoch: 1, status: 'completed', result: { ok: true } }],
    });
    expect(done.body).toMatchObject({ accepted: 1, rejected: [] });
    expect((await claimRow(job.id))?.status).toBe('completed');
    await untilParked(a, 0);
  }, 30_000);

  it('is not made across replicas: a claim parked on A gets a job submitted on B through the notification', async () => {
    const cap = capability();
    const parkedClaim = claim(a, { capability: cap, instance_id: 'w-cross', wait_ms: longWait });
    await untilParked(a, 1);
    const [handedA, handedB] = [await handoffs(a.url), await handoffs(b.url)];
    const id = await submit(b, cap);
    expect((await parkedClaim).body.claimed.map((j: { id: string }) => j.id)).toEqual([id]);
    expect(await claimRow(id)).toMatchObject({ owner_instance_id: 'w-cross', claim_epoch: 1 });
    expect([await handoffs(a.url), await handoffs(b.url)]).toEqual([handedA, handedB]);
  }, 30_000);

  it('hands each of several jobs to a different parked claim, oldest claim first', async () => {
    const cap = capability();
    const first = claim(a, { capability: cap, instance_id: 'w-1', wait_ms: longWait });
    await untilParked(a, 1);
    const second = claim(a, { capability: cap, instance_id: 'w-2', wait_ms: longWait });
    await untilParked(a, 2);
    const one = await submit(a, cap);
    const two = await submit(a, cap);
    expect((await first).body.claimed.map((j: { id: string }) => j.id)).toEqual([one]);
    expect((await second).body.claimed.map((j: { id: string }) => j.id)).toEqual([two]);
    expect((await claimRow(two))?.owner_instance_id).toBe('w-2');
  }, 30_000);

  it('a replayed submission (same Idempotency-Key) hands nothing: the parked claim goes on waiting', async () => {
    const cap = capability();
    const key = `"ho-${crypto.randomUUID()}"`;
    const keyed = async (payload: unknown) => {
      const res = await fetch(`${a.url}/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify(payload),
      });
      return { status: res.status, body: (await res.json()) as { id: string } };
    };
    const body = { capability: cap, submitted_by: 't', submitted_payload: { k: 1 } };
    const firstClaim = claim(a, { capability: cap, instance_id: 'w-key-1', wait_ms: longWait });
    await untilParked(a, 1);
    const created = await keyed(body);
    expect((await firstClaim).body.claimed[0].id).toBe(created.body.id);

    const secondClaim = claim(a, { capability: cap, instance_id: 'w-key-2', wait_ms: 1_500 });
    await untilParked(a, 1);
    const replayed = await keyed(body);
    expect(replayed.status).toBe(201);
    expect(replayed.body.id).toBe(created.body.id);
    expect(await secondClaim).toMatchObject({ body: { claimed: [] } });
    const rows = await replicas.sql`select id from jobs where capability = ${cap}`;
    expect(rows).toHaveLength(1);
    expect((await claimRow(created.body.id))?.owner_instance_id).toBe('w-key-1');
  }, 30_000);
});

describe('a handoff whose claim stopped waiting while the job was inserted', () => {
  // The services in this process: the drain gate's test hook holds the insert.
  let store: JobStore;
  let waiters: ClaimWaiters;
  let gate: DrainGate;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const { sql: own } = createDb(db.url, { max: 4, applicationName: 'handoff-test' });
    store = new JobStore(own, { defaultLeaseSeconds: 300, requireClaimEpoch: false, replicaId: 'ho-local' });
    gate = new DrainGate();
    waiters = new ClaimWaiters(
      own,
      store,
      gate,
      createLogger({ logLevel: 'silent', logFormat: 'json', replicaId: 'ho-local' }),
    );
    store.handoff = waiters;
    await waiters.start();
    close = async () => {
      await waiters.stop();
      await own.end({ timeout: 5 });
    };
  });
  afterAll(() => close?.());

  const newJob = (cap: string): NewJob => ({
    capability: cap,
    submittedBy: 't',
    payload: {},
    maxRetries: 0,
    maxDuration: null,
    totalDeadline: null,
    owner: null,
  });

  /** Parks a claim, then starts a submission whose handoff insert is held inside the gate. */
  async function heldHandoff(cap: string, signal: AbortSignal, idempotencyKey?: string) {
    const parked = waiters.claim(cap, 'w-held', 1, longWait, signal);
    while (waiters.parkedCount < 1) await new Promise((r) => setTimeout(r, 5));
    let release: () => void = () => {};
    let entered: () => void = () => {};
    const inside = new Promise<void>((res) => {
      entered = res;
    });
    gate.beforeClaim = () => {
      entered();
      return new Promise<void>((res) => {
        release = res;
      });
    };
    const created = store.create({ ...newJob(cap), idempotencyKey });
    created.catch(() => {}); // awaited by the test
    await inside;
    gate.beforeClaim = undefined;
    return { parked, created, release };
  }

  it('a client gone meanwhile: the job is queued again, its attempt given back, the epoch spent', async () => {
    const cap = capability();
    const gone = new AbortController();
    const { parked, created, release } = await heldHandoff(cap, gone.signal);
    gone.abort();
    expect(await parked).toEqual([]);
    release();
    const { id } = await created;
    const row = await claimRow(id);
    // max_retries 0: had the attempt counted, the job could never run.
    expect(row).toMatchObject({
      owner_instance_id: null,
      attempt_count: 0,
      claim_epoch: 1,
      status: 'working',
      claimed_by_replica: null,
      lease_expires_at: null,
    });
    const [next] = await store.claim(cap, 'w-next', 1);
    expect(next).toMatchObject({ id, attempt_count: 1, claim_epoch: 2 });
  });

  it('a handoff that does not happen (a key already used) lets the parked claim take a job queued meanwhile', async () => {
    const cap = capability();
    const key = `ho-${crypto.randomUUID()}`;
    await store.create({ ...newJob(`${cap}-other`), idempotencyKey: key });
    const { parked, created, release } = await heldHandoff(cap, new AbortController().signal, key);
    // Queued while the parked claim is reserved: its notification wakes nobody.
    const queued = await store.create(newJob(cap));
    release();
    await expect(created).rejects.toMatchObject({ code: 'idempotency_key_reused' });
    expect((await parked)?.map((j) => j.id)).toEqual([queued.id]);
  }, 20_000);

  it('a drain meanwhile: the drain answers after the insert, the parked claim answers as draining, nothing stays claimed', async () => {
    const cap = capability();
    const { parked, created, release } = await heldHandoff(cap, new AbortController().signal);
    let drained = false;
    const drain = gate.enter('local').then(() => {
      drained = true;
    });
    expect(await parked).toBeNull();
    await new Promise((r) => setTimeout(r, 100));
    expect(drained).toBe(false); // the insert is a claim in flight: the barrier waits for it
    release();
    const { id } = await created;
    await drain;
    expect(await claimRow(id)).toMatchObject({
      owner_instance_id: null,
      attempt_count: 0,
      status: 'working',
    });
    // While draining, a submission is queued, never handed (no claim may start).
    gate.leave('local');
    const again = waiters.claim(cap, 'w-after', 1, longWait, new AbortController().signal);
    expect((await again)?.map((j) => j.id)).toEqual([id]);
  });
});

import { describe, expect, it } from 'vitest';
import { useTestRegistry } from '../support/registry-app.ts';

// Concurrent claims and deltas reaching one replica share database statements
// (JobStore + Coalescer). Sharing must change nothing a caller can see: each
// job to one claimer, FIFO, every delta fenced on its own, one request's bad
// value failing that request only, and the deltas of one job applied in order.
const r = useTestRegistry();

let n = 0;
const cap = () => `coalesce-${++n}`;
const submitMany = async (capability: string, count: number) => {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await r.call('POST', '/jobs', { capability, submitted_by: 's', submitted_payload: { i } });
    ids.push(res.body.id as string);
  }
  return ids;
};
type Claimed = { id: string; claim_epoch: number; attempt_count: number };
const claim = async (capability: string, instance: string, max?: number) =>
  (await r.call('POST', '/jobs/claim', { capability, instance_id: instance, max_jobs: max })).body
    .claimed as Claimed[];
const batch = (instance: string, deltas: Record<string, unknown>[]) =>
  r.call('POST', '/jobs/batch', { instance_id: instance, deltas });
const job = async (id: string) => (await r.call('GET', `/jobs/${id}`)).body;
/** Submits `n` jobs and has `${prefix}0`…`${prefix}n-1` claim one each, in turn. */
const ownOneEach = async (prefix: string, n: number) => {
  const c = cap();
  await submitMany(c, n);
  const owned: { instance: string; id: string }[] = [];
  for (let i = 0; i < n; i++)
    owned.push({ instance: `${prefix}${i}`, id: ((await claim(c, `${prefix}${i}`))[0] as Claimed).id });
  return owned;
};

describe('coalesced claims', () => {
  it('deals each job to exactly one of many concurrent claimers, oldest first, in shared statements', async () => {
    const c = cap();
    const ids = await submitMany(c, 60);
    const before = { ...r.jobs.statementStats.claim };
    // 24 claimers at once asking for 1–3 jobs each: 48 jobs asked for, 60 queued.
    const asks = Array.from({ length: 24 }, (_, i) => ({ instance: `w${i}`, max: 1 + (i % 3) }));
    const answers = await Promise.all(asks.map((a) => claim(c, a.instance, a.max)));
    const got = answers.flat();
    expect(got).toHaveLength(48);
    expect(new Set(got.map((j) => j.id)).size).toBe(48);
    // Exactly the 48 oldest, each at its first epoch and attempt.
    expect(new Set(got.map((j) => j.id))).toEqual(new Set(ids.slice(0, 48)));
    expect(got.every((j) => j.claim_epoch === 1 && j.attempt_count === 1)).toBe(true);
    answers.forEach((a, i) => {
      expect(a).toHaveLength(asks[i]?.max as number);
      // Within one answer, oldest first.
      const pos = a.map((j) => ids.indexOf(j.id));
      expect(pos).toEqual([...pos].sort((x, y) => x - y));
    });
    // The database agrees on who owns what.
    const rows = await r.sql<{ id: string; owner_instance_id: string }[]>`
      select id, owner_instance_id from jobs where capability = ${c} and owner_instance_id is not null`;
    const owner = new Map(rows.map((row) => [row.id, row.owner_instance_id]));
    answers.forEach((a, i) => {
      for (const j of a) expect(owner.get(j.id)).toBe(asks[i]?.instance);
    });
    const after = r.jobs.statementStats.claim;
    expect(after.requests - before.requests).toBe(24);
    expect(after.statements - before.statements).toBeLessThan(24);
  });

  it('answers the claimers a statement could not serve with nothing, and hands out no job twice', async () => {
    const c = cap();
    await submitMany(c, 5);
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => claim(c, `x${i}`)));
    expect(answers.flat()).toHaveLength(5);
    expect(new Set(answers.flat().map((j) => j.id)).size).toBe(5);
    expect(answers.filter((a) => a.length === 0)).toHaveLength(7);
  });
});

describe('coalesced deltas', () => {
  it('fences every delta of a shared statement on its own', async () => {
    const owned = await ownOneEach('o', 6);
    const [a, b, stale, wrongOwner, legacy, scalar] = owned as [
      (typeof owned)[number],
      (typeof owned)[number],
      (typeof owned)[number],
      (typeof owned)[number],
      (typeof owned)[number],
      (typeof owned)[number],
    ];
    const before = { ...r.jobs.statementStats.delta };
    const answers = await Promise.all([
      batch(a.instance, [{ id: a.id, claim_epoch: 1, status: 'completed', result: { ok: true } }]),
      batch(b.instance, [{ id: b.id, claim_epoch: 1, progress: 0.5, progress_message: 'half' }]),
      batch(stale.instance, [{ id: stale.id, claim_epoch: 2, status: 'completed', result: {} }]),
      batch('intruder', [{ id: wrongOwner.id, status: 'failed', error: 'nope' }]),
      batch(legacy.instance, [{ id: legacy.id, status: 'failed', error: 'gave up' }]),
      batch(scalar.instance, [{ id: scalar.id, claim_epoch: 1, status: 'completed', result: false }]),
    ]);
    expect(answers.map((x) => x.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(answers.map((x) => x.body)).toEqual([
      { accepted: 1, rejected: [] },
      { accepted: 1, rejected: [] },
      { accepted: 0, rejected: [{ id: stale.id, reason: 'claim_superseded' }] },
      { accepted: 0, rejected: [{ id: wrongOwner.id, reason: 'not_owner' }] },
      { accepted: 1, rejected: [] },
      { accepted: 1, rejected: [] },
    ]);
    expect(await job(a.id)).toMatchObject({ status: 'completed', result: { ok: true } });
    expect(await job(b.id)).toMatchObject({ status: 'working', progress: 0.5, progress_message: 'half' });
    expect(await job(stale.id)).toMatchObject({ status: 'working', result: null });
    expect(await job(wrongOwner.id)).toMatchObject({ status: 'working', error: null });
    expect(await job(legacy.id)).toMatchObject({ status: 'failed', error: 'gave up' });
    expect(await job(scalar.id)).toMatchObject({ status: 'completed', result: false });
    const after = r.jobs.statementStats.delta;
    expect(after.requests - before.requests).toBe(6);
    expect(after.statements - before.statements).toBeLessThan(6);
  });

  it("fails only the request whose value PostgreSQL refuses; the others' deltas commit", async () => {
    const owned = await ownOneEach('p', 6);
    // The first two run alone (two statements at a time); the other four share the next
    // statement, which PostgreSQL refuses for the NUL in request 4's result.
    const answers = owned.map((o, i) =>
      r.jobs
        .applyDeltas(o.instance, [
          { id: o.id, claim_epoch: 1, status: 'completed', result: i === 4 ? { text: 'a\u0000b' } : { i } },
        ])
        .then(
          (ok) => ({ ok }),
          (err: { code?: string }) => ({ err: err.code }),
        ),
    );
    expect(r.jobs.deltaQueue).toEqual({ inFlight: 2, waiting: 4 });
    const settled = await Promise.all(answers);
    settled.forEach((a, i) => {
      if (i === 4) expect(a).toEqual({ err: expect.stringMatching(/^22/) });
      else expect(a).toEqual({ ok: { accepted: 1, rejected: [] } });
    });
    for (const [i, o] of owned.entries()) {
      if (i === 4) expect(await job(o.id)).toMatchObject({ status: 'working', result: null });
      else expect(await job(o.id)).toMatchObject({ status: 'completed', result: { i } });
    }
    // Over HTTP the refused value is the caller's 400, as for any value PostgreSQL cannot store.
    const bad = await batch(owned[4]?.instance as string, [
      { id: owned[4]?.id, claim_epoch: 1, status: 'completed', result: { text: 'a\u0000b' } },
    ]);
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/^invalid value: /);
    // Ours, not PostgreSQL's text (issue 30 finding 12).
    expect(bad.body.error).toBe('invalid value: text cannot hold a NUL character (\\u0000) (SQLSTATE 22P05)');
  });

  it('applies concurrent deltas for one job in the order they arrived', async () => {
    const c = cap();
    const [id] = await submitMany(c, 1);
    await claim(c, 'solo');
    // Submitted back to back without waiting: the second and third must wait for the first.
    const first = r.jobs.applyDeltas('solo', [{ id, claim_epoch: 1, progress: 0.5 }]);
    const second = r.jobs.applyDeltas('solo', [{ id, claim_epoch: 1, status: 'completed', result: 'done' }]);
    const third = r.jobs.applyDeltas('solo', [{ id, claim_epoch: 1, progress: 0.9 }]);
    // Two statements may run at once, but not two for the same job: the first runs, the others wait.
    expect(r.jobs.deltaQueue).toEqual({ inFlight: 1, waiting: 2 });
    expect(await first).toEqual({ accepted: 1, rejected: [] });
    expect(await second).toEqual({ accepted: 1, rejected: [] });
    expect(await third).toEqual({ accepted: 0, rejected: [{ id, reason: 'already_terminal' }] });
    expect(await job(id as string)).toMatchObject({ status: 'completed', progress: 0.5, result: 'done' });
  });

  it('applies a request that names one job twice delta by delta, in order', async () => {
    const c = cap();
    const [id] = await submitMany(c, 1);
    await claim(c, 'twice');
    const res = await batch('twice', [
      { id, claim_epoch: 1, progress: 0.3 },
      { id, claim_epoch: 1, status: 'completed', result: 1 },
      { id, claim_epoch: 1, progress: 0.6 },
    ]);
    expect(res.body).toEqual({ accepted: 2, rejected: [{ id, reason: 'already_terminal' }] });
    expect(await job(id as string)).toMatchObject({ status: 'completed', progress: 0.3, result: 1 });
  });
});

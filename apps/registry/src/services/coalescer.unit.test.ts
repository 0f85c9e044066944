import { describe, expect, it } from 'vitest';
import { Coalescer } from './coalescer.ts';

/** A run function whose statements the test finishes by hand, recording what each one got. */
function manualRun<I>() {
  const statements: { items: I[]; finish: () => void; fail: (e: unknown) => void }[] = [];
  const run = (items: I[]) =>
    new Promise<string[]>((resolve, reject) => {
      statements.push({
        items,
        finish: () => resolve(items.map((i) => `done:${JSON.stringify(i)}`)),
        fail: reject,
      });
    });
  return { statements, run };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('Coalescer', () => {
  it('runs a lone item at once, in a statement of its own', async () => {
    const { statements, run } = manualRun<number>();
    const c = new Coalescer(run, { maxInFlight: 1, maxWeight: 10 });
    const p = c.submit(1);
    expect(statements.map((s) => s.items)).toEqual([[1]]);
    statements[0]?.finish();
    await expect(p).resolves.toBe('done:1');
    expect(c.state).toEqual({ inFlight: 0, waiting: 0 });
  });

  it('gathers the items that arrive while a statement runs into the next one, oldest first', async () => {
    const { statements, run } = manualRun<number>();
    const c = new Coalescer(run, { maxInFlight: 1, maxWeight: 10 });
    const all = [1, 2, 3, 4].map((i) => c.submit(i));
    expect(statements.map((s) => s.items)).toEqual([[1]]);
    expect(c.state).toEqual({ inFlight: 1, waiting: 3 });
    statements[0]?.finish();
    await tick();
    expect(statements.map((s) => s.items)).toEqual([[1], [2, 3, 4]]);
    statements[1]?.finish();
    await expect(Promise.all(all)).resolves.toEqual(['done:1', 'done:2', 'done:3', 'done:4']);
  });

  it('keeps up to maxInFlight statements running', () => {
    const { statements, run } = manualRun<number>();
    const c = new Coalescer(run, { maxInFlight: 2, maxWeight: 10 });
    for (const i of [1, 2, 3, 4]) void c.submit(i);
    expect(statements.map((s) => s.items)).toEqual([[1], [2]]);
    expect(c.state).toEqual({ inFlight: 2, waiting: 2 });
  });

  it('caps a statement at maxWeight; an item heavier than that runs alone', async () => {
    const { statements, run } = manualRun<number>();
    const c = new Coalescer(run, { maxInFlight: 1, maxWeight: 5, weight: (i) => i });
    for (const i of [1, 2, 3, 9, 1]) void c.submit(i);
    for (let n = 0; n < 4; n++) {
      statements[n]?.finish();
      await tick();
    }
    expect(statements.map((s) => s.items)).toEqual([[1], [2, 3], [9], [1]]);
  });

  it('never puts two items with a common key in one statement, nor runs them side by side, and keeps their order', async () => {
    const { statements, run } = manualRun<{ n: number; keys: string[] }>();
    const c = new Coalescer(run, { maxInFlight: 2, maxWeight: 10, keys: (i) => i.keys });
    const item = (n: number, ...keys: string[]) => ({ n, keys });
    void c.submit(item(1, 'a'));
    void c.submit(item(2, 'a')); // waits for 1
    void c.submit(item(3, 'b')); // may overtake 2
    void c.submit(item(4, 'a', 'c')); // behind 2
    void c.submit(item(5, 'c')); // behind 4, which holds c
    const seen = () => statements.map((s) => s.items.map((i) => i.n));
    expect(seen()).toEqual([[1], [3]]);
    statements[0]?.finish(); // 1 done: 2 may run; 4 and 5 wait behind it
    await tick();
    expect(seen()).toEqual([[1], [3], [2]]);
    statements[1]?.finish();
    statements[2]?.finish();
    await tick();
    expect(seen()).toEqual([[1], [3], [2], [4]]);
    statements[3]?.finish();
    await tick();
    expect(seen()).toEqual([[1], [3], [2], [4], [5]]);
  });

  it('fails every item of a statement that throws, and goes on with the next', async () => {
    const { statements, run } = manualRun<number>();
    const c = new Coalescer(run, { maxInFlight: 1, maxWeight: 10 });
    const first = c.submit(1);
    const second = c.submit(2);
    const third = c.submit(3);
    statements[0]?.fail(new Error('boom'));
    await expect(first).rejects.toThrow('boom');
    await tick();
    expect(statements.map((s) => s.items)).toEqual([[1], [2, 3]]);
    statements[1]?.fail(new Error('again'));
    await expect(second).rejects.toThrow('again');
    await expect(third).rejects.toThrow('again');
    const fourth = c.submit(4);
    statements[2]?.finish();
    await expect(fourth).resolves.toBe('done:4');
  });

  it('with `alone`, re-runs a failed shared statement item by item: only the bad item fails', async () => {
    const { statements, run } = manualRun<number>();
    const c = new Coalescer(run, {
      maxInFlight: 1,
      maxWeight: 10,
      alone: (err) => String(err).includes('refused'),
    });
    const first = c.submit(0);
    const shared = Promise.allSettled([c.submit(12), c.submit(13), c.submit(14)]);
    statements[0]?.finish();
    await expect(first).resolves.toBe('done:0');
    await tick();
    statements[1]?.fail(new Error('refused: 13'));
    for (const [i, settle] of ['finish', 'fail', 'finish'].entries()) {
      await tick();
      if (settle === 'fail') statements[2 + i]?.fail(new Error('refused: 13'));
      else statements[2 + i]?.finish();
    }
    const [a, bad, b] = await shared;
    expect(a).toEqual({ status: 'fulfilled', value: 'done:12' });
    expect(bad).toMatchObject({ status: 'rejected', reason: new Error('refused: 13') });
    expect(b).toEqual({ status: 'fulfilled', value: 'done:14' });
    expect(statements.map((st) => st.items)).toEqual([[0], [12, 13, 14], [12], [13], [14]]);
  });

  it('with `alone`, an error it does not accept still fails the whole statement', async () => {
    const { statements, run } = manualRun<number>();
    const c = new Coalescer(run, { maxInFlight: 1, maxWeight: 10, alone: () => false });
    const first = c.submit(0);
    const shared = Promise.allSettled([c.submit(1), c.submit(2)]);
    statements[0]?.finish();
    await first;
    await tick();
    statements[1]?.fail(new Error('connection lost'));
    for (const p of await shared)
      expect(p).toMatchObject({ status: 'rejected', reason: new Error('connection lost') });
    expect(statements.map((st) => st.items)).toEqual([[0], [1, 2]]);
  });
});

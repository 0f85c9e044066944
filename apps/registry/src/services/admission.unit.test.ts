import { describe, expect, it } from 'vitest';
import { ApiError } from '../errors.ts';
import { Admission, classify } from './admission.ts';

const limits = { maxInFlight: 2, maxQueued: 1, maxQueueWaitMs: 50, maxLongPolls: 1 };

describe('admission per route class', () => {
  it('serves up to the limit, queues up to the queue bound, sheds the rest with 503 overloaded', async () => {
    const shed: string[] = [];
    const a = new Admission(limits);
    a.onShed = (cls, reason) => shed.push(`${cls}:${reason}`);
    const r1 = await a.enter('submit');
    const r2 = await a.enter('submit');
    const queued = a.enter('submit');
    expect(a.load('submit')).toEqual({ active: 2, queued: 1 });
    let refused: unknown;
    try {
      await a.enter('submit');
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused).toMatchObject({ code: 'overloaded', status: 503, retryAfterSeconds: 1 });
    // Another class has its own capacity.
    (await a.enter('claim'))();
    // A released slot passes to the queued request.
    r1();
    const r3 = await queued;
    expect(a.load('submit')).toEqual({ active: 2, queued: 0 });
    r2();
    r3();
    r3(); // releasing twice frees one slot only
    expect(a.load('submit')).toEqual({ active: 0, queued: 0 });
    expect(shed).toEqual(['submit:queue_full']);
  });

  it('sheds a request that waited longer than the queue wait', async () => {
    const a = new Admission(limits);
    const shed: string[] = [];
    a.onShed = (cls, reason) => shed.push(`${cls}:${reason}`);
    await a.enter('read');
    await a.enter('read');
    await expect(a.enter('read')).rejects.toMatchObject({ code: 'overloaded' });
    expect(shed).toEqual(['read:queue_timeout']);
    expect(a.load('read')).toEqual({ active: 2, queued: 0 });
  });

  it('never queues long-polls', async () => {
    const a = new Admission(limits);
    await a.enter('wait');
    expect(() => a.enter('wait')).toThrow(ApiError);
  });

  it('classifies main-port routes; operator routes have no class', () => {
    const q = (wait?: string) => (name: string) => (name === 'wait' ? wait : undefined);
    expect(classify('POST', '/jobs', q())).toBe('submit');
    expect(classify('POST', '/jobs/claim', q())).toBe('claim');
    expect(classify('POST', '/jobs/signals', q())).toBe('wait');
    expect(classify('GET', '/jobs/x/events', q('5'))).toBe('wait');
    expect(classify('GET', '/jobs/x/events', q())).toBe('read');
    expect(classify('POST', '/jobs/batch', q())).toBe('owner');
    expect(classify('POST', '/heartbeat', q())).toBe('owner');
    expect(classify('GET', '/agents', q())).toBe('read');
    for (const [m, p] of [
      ['GET', '/health'],
      ['GET', '/ready'],
      ['GET', '/metrics'],
      ['POST', '/admin/drain'],
      ['POST', '/jobs/x/reclaim'],
    ] as const)
      expect(classify(m, p, q())).toBeUndefined();
  });
});

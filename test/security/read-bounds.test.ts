import { limits } from '@mesh/protocol';
import { describe, expect, it } from 'vitest';
import { useTestRegistry } from '../support/registry-app.ts';

// Issue 18, item 4: reads on the anonymous main port are bounded in bytes, and
// the event log of a job in size and count.
const r = useTestRegistry();

const submit = async (capability: string, payload: Record<string, unknown> = {}) =>
  (await r.call('POST', '/jobs', { capability, submitted_by: 's', submitted_payload: payload })).body
    .id as string;

describe('bounded reads and event logs (issue 18)', () => {
  it('ends an events read at the byte budget; next_after continues it and every event comes once', async () => {
    const id = await submit('ev-budget');
    const chunk = 'e'.repeat(250 * 1024);
    for (let i = 0; i < 20; i++) {
      expect(
        (await r.call('POST', `/jobs/${id}/events`, { type: 'chunk', payload: { i, chunk } })).status,
      ).toBe(200);
    }
    const seen: number[] = [];
    let after = 0;
    for (let reads = 0; reads < 10 && seen.length < 20; reads++) {
      const res = await r.call('GET', `/jobs/${id}/events?after=${after}&limit=500`);
      expect(res.status).toBe(200);
      expect(res.text.length).toBeLessThanOrEqual(limits.maxResponseBytes + 64 * 1024);
      expect(res.body.events.length).toBeGreaterThan(0);
      seen.push(...res.body.events.map((e: { payload: { i: number } }) => e.payload.i));
      after = res.body.next_after;
    }
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('always returns at least one event, however large', async () => {
    const id = await submit('ev-one');
    await r.call('POST', `/jobs/${id}/events`, { type: 'small', payload: { n: 1 } });
    const res = await r.call('GET', `/jobs/${id}/events`);
    expect(res.body.events).toHaveLength(1);
  });

  it('refuses an event over the per-event size with 413, and a job past its event count with 409', async () => {
    const id = await submit('ev-limits');
    const big = await r.call('POST', `/jobs/${id}/events`, {
      type: 'big',
      payload: { x: 'b'.repeat(limits.maxEventBytes) },
    });
    expect(big.status).toBe(413);
    expect(big.body).toMatchObject({ code: 'payload_too_large' });
    // As if the job had posted all but one of its events already.
    await r.sql`update jobs set event_seq = ${limits.maxEventsPerJob - 1} where id = ${id}`;
    expect((await r.call('POST', `/jobs/${id}/events`, { type: 'last' })).body.seq).toBe(
      limits.maxEventsPerJob,
    );
    const over = await r.call('POST', `/jobs/${id}/events`, { type: 'one-too-many' });
    expect(over.status).toBe(409);
    expect(over.body).toEqual({
      error: `job has reached the limit of ${limits.maxEventsPerJob} events`,
      code: 'conflict',
      timestamp: expect.any(String),
    });
    // The registry's own terminal event still lands.
    expect((await r.call('POST', `/jobs/${id}/cancel`)).status).toBe(200);
    const log = await r.call('GET', `/jobs/${id}/events?after=${limits.maxEventsPerJob}`);
    expect(log.body.events.map((e: { type: string }) => e.type)).toEqual(['cancelled']);
  });

  it('refuses an event that would take a job past its byte total with 409, counting every posted byte', async () => {
    const id = await submit('ev-bytes');
    const payload = { chunk: 'z'.repeat(250 * 1024) };
    // What the route counts: type, payload and trace_context (null) as JSON.
    const each = Buffer.byteLength(JSON.stringify(payload)) + Buffer.byteLength('null') + 'chunk'.length;
    const fits = Math.floor(limits.maxEventBytesPerJob / each);
    expect(fits).toBeLessThan(limits.maxEventsPerJob); // the byte bound, not the count, is what stops it
    let accepted = 0;
    let refused: Awaited<ReturnType<typeof r.call>> | undefined;
    for (let i = 0; i < fits + 5 && !refused; i++) {
      const res = await r.call('POST', `/jobs/${id}/events`, { type: 'chunk', payload });
      if (res.status === 200) accepted++;
      else refused = res;
    }
    expect(accepted).toBe(fits);
    expect(refused?.status).toBe(409);
    expect(refused?.body).toEqual({
      error: `job's events would exceed the limit of ${limits.maxEventBytesPerJob} bytes per job (${fits * each} posted, this event ${each})`,
      code: 'conflict',
      timestamp: expect.any(String),
    });
    const [row] = await r.sql<{ event_bytes: string; event_seq: string }[]>`
      select event_bytes::text, event_seq::text from jobs where id = ${id}`;
    expect(row).toEqual({ event_bytes: String(fits * each), event_seq: String(fits) });
    // A smaller event that still fits is taken; the registry's own terminal event lands on top.
    const room = limits.maxEventBytesPerJob - fits * each;
    if (room > 20) expect((await r.call('POST', `/jobs/${id}/events`, { type: 't' })).status).toBe(200);
    expect((await r.call('POST', `/jobs/${id}/cancel`)).status).toBe(200);
  });

  it('ends a GET /jobs page at the byte budget; the cursor continues and every job comes once', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 12; i++) ids.add(await submit('list-budget', { i, blob: 'j'.repeat(500 * 1024) }));
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await r.call(
        'GET',
        `/jobs?capability=list-budget&limit=200${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(res.status).toBe(200);
      expect(res.text.length).toBeLessThanOrEqual(limits.maxResponseBytes + 600 * 1024);
      seen.push(...res.body.jobs.map((j: { id: string }) => j.id));
      cursor = res.body.next_cursor;
      pages += 1;
    } while (cursor && pages < 10);
    expect(pages).toBeGreaterThan(1);
    expect(seen).toHaveLength(12);
    expect(new Set(seen)).toEqual(ids);
  });
});

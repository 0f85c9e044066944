import { describe, expect, it } from 'vitest';
import { useTestRegistry } from '../support/registry-app.ts';

const r = useTestRegistry();

const ids = (body: { jobs: { id: string }[] }) => body.jobs.map((j) => j.id);

describe('GET /jobs (reference §2.3)', () => {
  it('answers an empty list with jobs: [] and next_cursor: null', async () => {
    expect((await r.call('GET', '/jobs?capability=none')).body).toEqual({ jobs: [], next_cursor: null });
  });

  it('pages newest first without gaps or duplicates, also across identical submitted_at', async () => {
    // Seven jobs, five sharing one submitted_at: the id breaks ties.
    const made: string[] = [];
    for (let i = 0; i < 7; i++) {
      made.push(
        (await r.call('POST', '/jobs', { capability: 'pager', submitted_by: 's', submitted_payload: { i } }))
          .body.id,
      );
    }
    await r.sql`update jobs set submitted_at = '2026-01-01T00:00:00.123456Z' where id = any(${made.slice(1, 6)})`;
    const expected = (
      await r.sql<
        { id: string }[]
      >`select id from jobs where capability = 'pager' order by submitted_at desc, id desc`
    ).map((x) => x.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await r.call('GET', `/jobs?capability=pager&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      seen.push(...ids(res.body));
      cursor = res.body.next_cursor;
      pages += 1;
    } while (cursor);
    expect(seen).toEqual(expected);
    expect(pages).toBe(4);
  });

  it('filters by status (CSV), owner, capability and submitted_since', async () => {
    const mk = async (capability: string) =>
      (await r.call('POST', '/jobs', { capability, submitted_by: 's', submitted_payload: {} })).body
        .id as string;
    const a = await mk('filt');
    const b = await mk('filt');
    const c = await mk('filt-other');
    await r.call('POST', '/jobs/claim', { capability: 'filt', instance_id: 'owner-x' });
    await r.call('POST', `/jobs/${b}/cancel`);
    expect(ids((await r.call('GET', '/jobs?capability=filt&status=working')).body)).toEqual([a]);
    expect(ids((await r.call('GET', '/jobs?capability=filt&status=cancelled, working')).body).sort()).toEqual(
      [a, b].sort(),
    );
    expect(ids((await r.call('GET', '/jobs?owner_instance_id=owner-x')).body)).toEqual([a]);
    expect(ids((await r.call('GET', '/jobs?capability=filt-other')).body)).toEqual([c]);
    const future = Math.floor(Date.now() / 1000) + 3600;
    expect((await r.call('GET', `/jobs?submitted_since=${future}`)).body.jobs).toEqual([]);
    expect((await r.call('GET', '/jobs?submitted_since=0&capability=filt-other')).body.jobs).toHaveLength(1);
  });

  it('rejects bad parameters with the 3.7 messages', async () => {
    const cases: [string, string][] = [
      [
        'status=running',
        'invalid status "running": must be one of working,input_required,completed,failed,cancelled',
      ],
      ['limit=0', 'limit must be in [1, 200], got 0'],
      ['limit=201', 'limit must be in [1, 200], got 201'],
      ['limit=-1', 'limit must be in [1, 200], got -1'],
      ['limit=x', 'limit must be in [1, 200], got x'],
      ['cursor=not-a-cursor', 'ListJobs: invalid cursor: malformed cursor payload'],
      ['submitted_since=soon', 'Invalid format for parameter submitted_since: not an integer: "soon"'],
    ];
    for (const [query, message] of cases) {
      const res = await r.call('GET', `/jobs?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error, query).toBe(message);
    }
  });
});

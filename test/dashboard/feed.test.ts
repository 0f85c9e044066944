import { createDb, type Sql } from '@mesh/db';
import { createLogger } from '@mesh/registry';
import { useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentStore } from '../../apps/registry/src/services/agents.ts';
import { DashboardFeed } from '../../apps/registry/src/services/dashboard-feed.ts';
import { until } from '../support/until.ts';

const db = useTestDatabase();
let sql: Sql;
let reads = 0;
let feed: DashboardFeed;
const logger = createLogger({ logLevel: 'silent', logFormat: 'json', replicaId: 'feed' });

beforeAll(() => {
  ({ sql } = createDb(db.url, { max: 2 }));
  // Every statement the feed sends on its connection, counted.
  const counted = new Proxy(sql, {
    apply(target, self, args) {
      reads += 1;
      return Reflect.apply(target, self, args);
    },
  });
  feed = new DashboardFeed(
    counted,
    new AgentStore(sql, { timeoutThresholdSeconds: 30 }, logger),
    {
      replicaId: 'feed',
      bootId: crypto.randomUUID(),
      version: '0.2.0',
      schemaVersion: 3,
      uptimeSeconds: () => 0,
    },
    { intervalMs: 50, slowEvery: 5, liveWindowMs: 3_000, historyPoints: 10, scrapeTimeoutMs: 200 },
    logger,
  );
});
afterAll(async () => {
  await feed.stop();
  await sql.end();
});

/** Subscribes `n` listeners, waits for `ticks` snapshots, and returns the statements sent per snapshot. */
async function run(n: number, ticks: number): Promise<{ perTick: number; received: string[][] }> {
  const received: string[][] = Array.from({ length: n }, () => []);
  const unsubscribe = received.map((box) => feed.subscribe((json) => json && box.push(json)));
  await until('the first snapshot', () => received.every((b) => b.length > 0));
  const startReads = reads;
  const start = received[0]?.length ?? 0;
  await until(`${ticks} snapshots`, () => (received[0]?.length ?? 0) >= start + ticks);
  const perTick = (reads - startReads) / ((received[0]?.length ?? 0) - start);
  for (const u of unsubscribe) u();
  return { perTick, received };
}

describe('the dashboard feed: one read per tick, whatever the number of dashboards', () => {
  it('sends the same statements per snapshot for 1 and for 20 subscribers, and the same snapshot to all', async () => {
    const one = await run(1, 20);
    const twenty = await run(20, 20);
    // One fast statement a tick, plus the slow reads (counts, ledger) every fifth.
    expect(one.perTick).toBeLessThanOrEqual(2);
    expect(twenty.perTick).toBeLessThanOrEqual(2);
    expect(Math.abs(twenty.perTick - one.perTick)).toBeLessThan(0.5);
    // The twenty got the very same snapshots (one serialization per tick).
    const last = twenty.received.map((b) => b.at(-2));
    expect(new Set(last).size).toBe(1);
  });

  it('reads nothing once the last subscriber left', async () => {
    await run(3, 3);
    await new Promise((r) => setTimeout(r, 150)); // a tick under way finishes
    const idle = reads;
    await new Promise((r) => setTimeout(r, 500)); // ten intervals
    expect(reads).toBe(idle);
    expect(feed.subscriberCount).toBe(0);
  });
});

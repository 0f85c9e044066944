import { installedRelease, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserSetupTimeoutMs, launchBrowser, openPage, screenshot } from '../support/browser.ts';
import { until } from '../support/until.ts';

const db = useTestDatabase();

let browser: Browser;
const replicas: RegistryProcess[] = [];
beforeAll(async () => {
  browser = await launchBrowser();
  // Mid rolling upgrade: one replica already on this release, one still on 0.1.0 (kept in releases/).
  const old = await installedRelease('0.1.0');
  replicas.push(
    await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'new-a',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    }),
  );
  replicas.push(
    await spawnRegistry({
      bin: old.registryBin,
      databaseUrl: db.url,
      replicaId: 'old-b',
      env: { MESH_REPLICA_HEARTBEAT: '200ms' },
    }),
  );
}, browserSetupTimeoutMs);
afterAll(async () => {
  await browser?.close();
  await Promise.all(replicas.map((r) => r.stop()));
});

describe('dashboard: the upgrade page during a rolling upgrade', () => {
  it('shows both versions, the progress, and each replica compatible with the schema', async () => {
    const [current] = replicas as [RegistryProcess];
    const { page, errors } = await openPage(browser);
    await page.goto(`${current.url}/ui#/upgrade`);
    const progress = page.locator('[data-testid="rolling-upgrade"]');
    await progress.waitFor();
    expect(await progress.textContent()).toMatch(
      /Rolling upgrade in progress: 1 of 2 live replicas run 0\.2\.0/,
    );
    const main = page.locator('main');
    await until(
      'both verdicts',
      async () => (await page.locator('[data-verdict="compatible"]').count()) === 2,
    );
    expect(await main.textContent()).toContain('0.1.0: 1 live replica(s)');
    expect(await main.textContent()).not.toContain('incompatible');
    await screenshot(page, 'upgrade-rolling');
    expect(errors).toEqual([]);
  });
});

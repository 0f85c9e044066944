import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserSetupTimeoutMs, launchBrowser, openPage, screenshot } from '../support/browser.ts';
import { call } from '../support/http.ts';
import { reportSvc, timeSvc } from '../support/sample-agents.ts';
import { until } from '../support/until.ts';

const db = useTestDatabase();
const hostile = '<img src=x onerror="window.__xss=1">evil<b>agent</b>';

let browser: Browser;
let r: RegistryProcess;
let page: Page;
let errors: string[];
beforeAll(async () => {
  browser = await launchBrowser();
  r = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: 'solo',
    env: { MESH_REPLICA_HEARTBEAT: '200ms' },
  });
  // Names are validated at first registration only (as in MCP Mesh 3.7): a
  // refresh can rename an agent to anything, HTML included.
  const renamed = { ...timeSvc, agent_id: 'hostile-1', name: 'hostile' };
  for (const agent of [timeSvc, reportSvc, renamed, { ...renamed, name: hostile }]) {
    const res = await fetch(`${r.url}/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mesh-sdk-version': '0.2.0' },
      body: JSON.stringify(agent),
    });
    expect(res.status).toBe(200);
  }
  ({ page, errors } = await openPage(browser));
  await page.goto(`${r.url}/ui#/jobs`);
  await page.locator('[data-testid="connection"]', { hasText: 'live' }).waitFor();
}, browserSetupTimeoutMs);
afterAll(async () => {
  await browser?.close();
  await r?.stop();
});

describe('dashboard: jobs and agents pages against a real registry', () => {
  it('a job submitted through the API appears in the list live; its detail shows its events', async () => {
    const { body: created } = await call(r.url, 'POST', '/jobs', {
      capability: 'invoice',
      submitted_by: 'billing',
      submitted_payload: { note: '<script>window.__xss=2</script>' },
    });
    const row = page.locator(`tr[data-job="${created.id}"]`);
    await row.waitFor();
    expect(await row.locator('.status').textContent()).toBe('working');

    // A worker claims it, reports progress, completes: the row follows without a reload.
    const { body: claimed } = await call(r.url, 'POST', '/jobs/claim', {
      capability: 'invoice',
      instance_id: 'w1',
    });
    const epoch = claimed.claimed[0].claim_epoch;
    expect(
      (await call(r.url, 'POST', `/jobs/${created.id}/events`, { type: 'checkpoint', payload: { step: 1 } }))
        .status,
    ).toBe(200);
    await call(r.url, 'POST', '/jobs/batch', {
      instance_id: 'w1',
      deltas: [{ id: created.id, claim_epoch: epoch, status: 'completed', result: { total: 42 } }],
    });
    await until(
      'the row turns completed',
      async () => (await row.locator('.status').textContent()) === 'completed',
    );

    await row.locator('button.link').click();
    const detail = page.locator('[data-testid="job-detail"]');
    await detail.locator('tr[data-event="checkpoint"]').waitFor();
    expect(await detail.locator('pre').first().textContent()).toContain('<script>window.__xss=2</script>');
    await until('the counts include it', async () =>
      ((await page.locator('[data-testid="job-counts"]').textContent()) ?? '').includes('invoice'),
    );
    await screenshot(page, 'jobs');
    expect(await page.evaluate('window.__xss')).toBeUndefined();
  });

  it('an agent whose name holds HTML shows as text; the other pages render', async () => {
    await page.goto(`${r.url}/ui#/agents`);
    const row = page.locator('tr[data-agent="hostile-1"]');
    await row.waitFor();
    expect(await row.locator('td').first().textContent()).toBe(hostile);
    expect(await row.locator('img').count()).toBe(0);
    expect(await row.locator('b').count()).toBe(0);
    // The dependency view: report-svc resolves 1 of its 2 dependencies.
    const report = page.locator(`tr[data-agent="${reportSvc.agent_id}"]`);
    expect(await report.textContent()).toContain('1/2 resolved');
    await report.locator('button.link').click();
    await page.locator('[data-testid="agent-detail"]', { hasText: 'weather_service' }).waitFor();
    await screenshot(page, 'agents');
    expect(await page.evaluate('window.__xss')).toBeUndefined();

    await page.goto(`${r.url}/ui#/upgrade`);
    await page.locator('main', { hasText: 'Schema compatibility' }).waitFor();
    expect(await page.locator('main').textContent()).toContain('compatible');
    expect(await page.locator('main').textContent()).toMatch(/0\.2\.0: 3 agent\(s\)/);
    await screenshot(page, 'upgrade');

    await page.goto(`${r.url}/ui#/throughput`);
    await page.locator('figure.chart').first().waitFor();
    // A little work so the charts have something to draw.
    for (let i = 0; i < 20; i++) {
      const { body } = await call(r.url, 'POST', '/jobs', {
        capability: 'thumbnail',
        submitted_by: 'bench',
        submitted_payload: { i },
      });
      if (i % 2 === 0) {
        const { body: c } = await call(r.url, 'POST', '/jobs/claim', {
          capability: 'thumbnail',
          instance_id: 'w2',
        });
        await call(r.url, 'POST', '/jobs/batch', {
          instance_id: 'w2',
          deltas: [
            { id: c.claimed[0].id, claim_epoch: c.claimed[0].claim_epoch, status: 'completed', result: {} },
          ],
        });
      }
      expect(body.id).toBeTruthy();
      await new Promise((res) => setTimeout(res, 150));
    }
    await until('the chart has claims', async () =>
      /Claims: [1-9]|Claims: 0\.[1-9]/.test((await page.locator('main').textContent()) ?? ''),
    );
    await screenshot(page, 'throughput');
    expect(errors).toEqual([]);
  });
});

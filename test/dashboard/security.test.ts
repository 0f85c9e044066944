import { freePort, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserSetupTimeoutMs, launchBrowser, openPage, screenshot } from '../support/browser.ts';
import { until } from '../support/until.ts';

const db = useTestDatabase();
const token = 'dashboard-test-token-0123';

let browser: Browser;
let r: RegistryProcess;
let admin: string;
beforeAll(async () => {
  browser = await launchBrowser();
  r = await spawnRegistry({
    databaseUrl: db.url,
    replicaId: 'guarded',
    adminPort: await freePort(),
    env: { MESH_ADMIN_TOKEN: token, MESH_REPLICA_HEARTBEAT: '200ms' },
  });
  admin = r.adminUrl as string;
}, browserSetupTimeoutMs);
afterAll(async () => {
  await browser?.close();
  await r?.stop();
});

const get = (path: string, auth?: string) =>
  fetch(`${admin}${path}`, { headers: auth ? { authorization: `Bearer ${auth}` } : {} });

describe('dashboard security: admin listener, admin token, CSP, no state change on GET', () => {
  it('is served only on the admin listener, with a strict Content-Security-Policy; its API refuses without the token', async () => {
    expect((await fetch(`${r.url}/ui`)).status).toBe(404);
    // As for /admin/* on the main port: 401 first when the token is missing, else 404.
    expect((await fetch(`${r.url}/ui/api/stream`)).status).toBe(401);
    expect(
      (await fetch(`${r.url}/ui/api/stream`, { headers: { authorization: `Bearer ${token}` } })).status,
    ).toBe(404);
    const page = await get('/ui');
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe');
    const html = await page.text();
    expect(html).not.toMatch(/<script>|<style>| style=| on\w+=/); // nothing inline
    for (const path of [
      '/ui/api/stream',
      '/ui/api/jobs',
      '/ui/api/session',
      '/ui/api/replicas/guarded/drain',
    ]) {
      expect((await get(path)).status, path).toBe(401);
      expect((await get(path, 'wrong-token-wrong-token')).status, path).toBe(401);
    }
    const refused = await fetch(`${admin}/ui/api/fleet/drain`, { method: 'POST' });
    expect(refused.status).toBe(401);
    // Reading a drain's state changes nothing.
    expect((await get('/ui/api/replicas/guarded/drain', token)).status).toBe(200);
    const state = (await (await get('/admin/drain', token)).json()) as {
      draining: boolean;
      fleet_draining: boolean;
    };
    expect(state).toMatchObject({ draining: false, fleet_draining: false });
  });

  it('asks for the token, keeps it in the session (never in the URL), and works once signed in', async () => {
    const { page } = await openPage(browser);
    await page.goto(`${admin}/ui`);
    const form = page.locator('form.login');
    await form.waitFor();
    expect(await page.locator('tr[data-replica]').count()).toBe(0);
    await screenshot(page, 'login');
    await form.locator('input[name="token"]').fill('not-the-token-at-all');
    await form.locator('button[type="submit"]').click();
    await page.locator('form.login [role="alert"]', { hasText: 'Wrong token.' }).waitFor();

    await form.locator('input[name="token"]').fill(token);
    await form.locator('button[type="submit"]').click();
    await page.locator('tr[data-replica="guarded"]').waitFor();
    expect(page.url()).not.toContain(token);
    expect(await page.evaluate("sessionStorage.getItem('mesh-dashboard-token')")).toBe(token);
    expect(await page.evaluate('document.cookie')).toBe('');
    // A reload keeps the session (same tab).
    await page.reload();
    const row = page.locator('tr[data-replica="guarded"]');
    await row.waitFor();

    // A state change goes through with the token: drain, then resume, by the buttons.
    await row.locator('button[data-action="drain"]').click();
    await page.locator('.confirm button.primary').click();
    await until(
      'drained',
      async () => (await page.locator('.drain-progress').getAttribute('data-phase')) === 'done',
    );
    expect(((await (await get('/admin/drain', token)).json()) as { draining: boolean }).draining).toBe(true);
    await row.locator('button[data-action="resume"]').click();
    await page.locator('.confirm button.primary').click();
    await page.locator('.message', { hasText: 'Resumed replica guarded' }).waitFor();
    expect(((await (await get('/admin/drain', token)).json()) as { draining: boolean }).draining).toBe(false);
    // The audit trail names the dashboard's action and the forwarded admin call.
    await until('audit lines', () =>
      r.logRecords().some((l) => l.audit === true && l.path === '/ui/api/replicas/guarded/drain'),
    );
    await page.context().close();
  });
});

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserSetupTimeoutMs, launchBrowser, openPage } from '../support/browser.ts';
import { reportSvc, timeSvc } from '../support/sample-agents.ts';
import { until } from '../support/until.ts';

/** The real meshui 3.7.1, from the optional dev dependency @mcpmesh/cli-linux-x64 (as test/compat finds meshctl). */
const meshui = fileURLToPath(
  new URL('../../node_modules/@mcpmesh/cli-linux-x64/bin/meshui', import.meta.url),
);
const db = useTestDatabase();

let r: RegistryProcess;
let ui: ChildProcess | undefined;
let uiUrl: string;
let browser: Browser;
let logs = '';
/** meshui keeps a SQLite file of its own (DATABASE_URL, default in its cwd): a folder of its own. */
const home = mkdtempSync(join(tmpdir(), 'meshui-'));
beforeAll(async () => {
  if (!existsSync(meshui)) {
    throw new Error(
      `the real meshui 3.7.1 is missing at ${meshui}: it comes with the optional dev dependency ` +
        '@mcpmesh/cli-linux-x64@3.7.1 (linux-x64 only); run pnpm install on linux-x64',
    );
  }
  r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'meshui-compat' });
  for (const agent of [timeSvc, reportSvc]) {
    const res = await fetch(`${r.url}/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(agent),
    });
    expect(res.status).toBe(200);
  }
  const port = await freePort();
  uiUrl = `http://127.0.0.1:${port}`;
  ui = spawn(meshui, ['--port', String(port), '--registry-url', r.url], {
    cwd: home,
    // No Redis or Tempo here: tracing off.
    env: {
      ...process.env,
      HOME: home,
      DATABASE_URL: join(home, 'meshui.db'),
      MCP_MESH_DISTRIBUTED_TRACING_ENABLED: 'false',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  ui.stdout?.on('data', (d) => (logs += d));
  ui.stderr?.on('data', (d) => (logs += d));
  await until('meshui answers', () =>
    fetch(`${uiUrl}/api/health`)
      .then((res) => res.status === 200)
      .catch(() => false),
  );
  browser = await launchBrowser();
}, browserSetupTimeoutMs);
afterAll(async () => {
  await browser?.close();
  if (ui?.pid && ui.exitCode === null) {
    const exited = new Promise((res) => ui?.once('exit', res));
    ui.kill('SIGTERM');
    await Promise.race([exited, new Promise((res) => setTimeout(res, 5_000))]);
    if (ui.exitCode === null) ui.kill('SIGKILL');
  }
  await r?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe('compat: the real meshui 3.7.1 against our registry', () => {
  it('proxies /api/health and /api/agents to us, and its page lists our agents', async () => {
    const health = await fetch(`${uiUrl}/api/health`);
    expect(health.status, logs).toBe(200);
    const res = await fetch(`${uiUrl}/api/agents`);
    expect(res.status, logs).toBe(200);
    const body = (await res.json()) as { agents: { name: string; status: string }[]; count: number };
    expect(body.count).toBe(2);
    expect(body.agents.map((a) => a.name).sort()).toEqual(['report-svc', 'time-svc']);

    const { page } = await openPage(browser);
    await page.goto(`${uiUrl}/`);
    await page.getByText('time-svc').first().waitFor({ timeout: 30_000 });
    await page.getByText('report-svc').first().waitFor({ timeout: 30_000 });
    await page.context().close();
  });
});

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';

/** Debian's chromium: no browser download (the machines reach only the package registries). */
export const chromiumPath = '/usr/bin/chromium';
const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
const lock = '/tmp/mesh-test-chromium-install.lock';

/** A test file's setup may install chromium first (apt-get: minutes on a cold machine). */
export const browserSetupTimeoutMs = 15 * 60_000;

/** Where the test run writes the dashboard screenshots that docs/dashboard.md shows. */
export const screenshotDir = fileURLToPath(new URL('../../docs/img/', import.meta.url));

/**
 * Installs Debian's chromium when it is missing (as root, non-interactive),
 * one installer at a time across test files; fails loudly if it cannot.
 */
export async function ensureChromium(): Promise<void> {
  if (existsSync(chromiumPath)) return;
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Another test file is installing: wait for it (bounded).
      if (existsSync(chromiumPath)) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for another chromium install (${lock})`);
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const run = (args: string[]) =>
      spawnSync('apt-get', args, { env, encoding: 'utf8', timeout: 10 * 60_000, stdio: 'pipe' });
    let r = run(['install', '-y', '-qq', 'chromium']);
    if (r.status !== 0) {
      run(['update', '-qq']);
      r = run(['install', '-y', '-qq', 'chromium']);
    }
    if (r.status !== 0 || !existsSync(chromiumPath)) {
      throw new Error(
        `the dashboard tests need Debian's chromium at ${chromiumPath} and could not install it ` +
          `(apt-get install -y chromium, as root: exit ${r.status}):\n${r.stderr ?? ''}${r.error?.message ?? ''}`,
      );
    }
  } finally {
    rmdirSync(lock);
  }
}

/** Headless chromium driven by playwright-core. */
export async function launchBrowser(): Promise<Browser> {
  await ensureChromium();
  return chromium.launch({ executablePath: chromiumPath, args: flags, headless: true, timeout: 60_000 });
}

/** A page whose console errors and CSP violations are collected (a test can assert none). */
export async function openPage(browser: Browser): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  return { page, errors };
}

/** Writes docs/img/dashboard-<name>.png. */
export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: `${screenshotDir}dashboard-${name}.png`, fullPage: false });
}

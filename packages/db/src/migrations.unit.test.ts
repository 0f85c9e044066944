import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { migrationsDir, readBundledMigrations } from './migrations.ts';

const packageDir = fileURLToPath(new URL('..', import.meta.url));

describe('bundled migrations', () => {
  it('agree with schema.ts: drizzle-kit generate finds nothing to add', async () => {
    const out = mkdtempSync(join(tmpdir(), 'mesh-drizzle-check-'));
    try {
      cpSync(migrationsDir, out, { recursive: true });
      const before = readdirSync(out).sort();
      const { stdout, stderr } = await promisify(execFile)(
        join(packageDir, 'node_modules/.bin/drizzle-kit'),
        ['generate', '--config', 'drizzle.config.ts'],
        { cwd: packageDir, env: { ...process.env, DRIZZLE_OUT: relative(packageDir, out) }, timeout: 60_000 },
      );
      expect(
        readdirSync(out).sort(),
        `schema.ts changed without a migration; run pnpm db:generate\n${stdout}${stderr}`,
      ).toEqual(before);
      expect(stdout + stderr).toMatch(/No schema changes/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 60_000);

  it('are read in journal order with a sha256 per file and statements split on breakpoints', () => {
    const bundled = readBundledMigrations();
    expect(bundled.length).toBeGreaterThan(0);
    bundled.forEach((m, i) => {
      expect(m.idx).toBe(i);
      expect(m.name).toMatch(/^\d{4}_[a-z0-9_]+$/);
      expect(m.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(m.statements.every((s) => s.length > 0 && !s.includes('statement-breakpoint'))).toBe(true);
    });
  });
});

import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  MigrationDeclarationError,
  migrationsDir,
  readBundledMigrations,
  releaseAtLeast,
} from './migrations.ts';

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

describe('compatibility declarations', () => {
  const folder = (declarations: Record<string, unknown>) => {
    const dir = mkdtempSync(join(tmpdir(), 'mesh-decl-'));
    mkdirSync(join(dir, 'meta'));
    writeFileSync(
      join(dir, 'meta', '_journal.json'),
      JSON.stringify({
        entries: [
          { idx: 0, tag: '0000_a', when: 1, breakpoints: true },
          { idx: 1, tag: '0001_b', when: 2, breakpoints: true },
        ],
      }),
    );
    writeFileSync(join(dir, '0000_a.sql'), 'create table a (id int)');
    writeFileSync(join(dir, '0001_b.sql'), 'create table b (id int)');
    writeFileSync(join(dir, 'compatibility.json'), JSON.stringify({ migrations: declarations }));
    return dir;
  };
  const a = { compatibility: 'compatible', release: '0.1.0', reason: 'creates a' };

  it('are given for every bundled migration', () => {
    for (const m of readBundledMigrations()) {
      expect(['compatible', 'breaking'], m.name).toContain(m.compatibility);
      expect(m.release, m.name).toMatch(/^\d+\.\d+\.\d+/);
      expect(m.reason.length, m.name).toBeGreaterThan(0);
    }
  });

  it('refuse a migration that declares no compatibility, naming it', () => {
    const dir = folder({ '0000_a': a });
    expect(() => readBundledMigrations(dir)).toThrow(MigrationDeclarationError);
    expect(() => readBundledMigrations(dir)).toThrow(/0001_b declares no compatibility/);
  });

  it('refuse an unknown compatibility, a missing release or reason', () => {
    expect(() =>
      readBundledMigrations(folder({ '0000_a': a, '0001_b': { ...a, compatibility: 'maybe' } })),
    ).toThrow(/0001_b: compatibility must be "compatible" or "breaking"/);
    expect(() =>
      readBundledMigrations(folder({ '0000_a': a, '0001_b': { compatibility: 'breaking' } })),
    ).toThrow(/0001_b: release must be a version.*\n.*0001_b: reason must say/);
  });

  it('give a breaking migration its oldest compatible release (its own release by default)', () => {
    const [, b] = readBundledMigrations(
      folder({ '0000_a': a, '0001_b': { compatibility: 'breaking', release: '0.3.0', reason: 'drops a' } }),
    );
    expect(b).toMatchObject({ compatibility: 'breaking', release: '0.3.0', oldestCompatible: '0.3.0' });
  });

  it('compare releases numerically, a prerelease before its release', () => {
    expect(releaseAtLeast('0.10.0', '0.9.1')).toBe(true);
    expect(releaseAtLeast('0.2.0', '0.2.0')).toBe(true);
    expect(releaseAtLeast('0.2.0-rc.1', '0.2.0')).toBe(false);
    expect(releaseAtLeast('0.2.0', '0.2.0-rc.1')).toBe(true);
    expect(releaseAtLeast('0.1.9', '0.2.0')).toBe(false);
    expect(releaseAtLeast('1.0.0', '0.99.99')).toBe(true);
  });
});

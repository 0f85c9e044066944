import { describe, expect, it } from 'vitest';
import { meshctl } from './support.ts';

// Every command explains itself with examples; no registry needed.
const commands = [
  ['registry', 'status'],
  ['registry', 'drain'],
  ['registry', 'resume'],
  ['registry', 'replicas'],
  ['registry', 'forget'],
  ['job', 'status'],
  ['job', 'list'],
  ['job', 'submit'],
  ['job', 'cancel'],
  ['job', 'reclaim'],
  ['job', 'events'],
  ['job', 'wait'],
  ['list'],
  ['status'],
  ['db', 'status'],
  ['db', 'migrate'],
  ['db', 'snapshot'],
  ['db', 'snapshots'],
  ['db', 'restore'],
  ['doctor'],
  ['upgrade', 'check'],
  ['upgrade', 'verify'],
];

describe('meshctl --help and completion', () => {
  it('prints help with examples for every command, exit 0', async () => {
    const results = await Promise.all(commands.map((c) => meshctl([...c, '--help'])));
    results.forEach((r, i) => {
      const name = (commands[i] as string[]).join(' ');
      expect(r.code, name).toBe(0);
      expect(r.stdout, name).toContain(`meshctl ${name}`);
      expect(r.stdout, name).toContain('Examples:');
      expect(r.stdout, name).toContain('--registry-url');
    });
    const top = await meshctl(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('Exit codes: 0 done');
  }, 120_000);

  it('prints a shell completion script', async () => {
    const r = await meshctl(['completion']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('###-begin-meshctl-completions-###');
  });
});

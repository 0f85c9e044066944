import type { AppliedMigration, BundledMigration } from '@mesh/db';
import { describe, expect, it } from 'vitest';
import { oldestRelease, pendingMigrationVerdicts, replicaSchemaVerdict } from './compat.ts';

const applied = (
  name: string,
  idx: number,
  decl: Partial<Pick<AppliedMigration, 'compatibility' | 'release' | 'oldestCompatible'>> = {},
): AppliedMigration => ({
  name,
  idx,
  hash: name,
  appliedAt: new Date(0),
  appliedBy: null,
  compatibility: decl.compatibility ?? null,
  release: decl.release ?? null,
  oldestCompatible: decl.oldestCompatible ?? null,
  reason: null,
});
const replica = (version: string, schema_version: number) => ({ replica_id: 'r', version, schema_version });
const init = applied('0000_init', 0, { compatibility: 'compatible', release: '0.1.0' });

describe('replicaSchemaVerdict', () => {
  it('at its schema, ahead but compatible, breaking, undeclared, behind', () => {
    expect(replicaSchemaVerdict(replica('0.1.0', 1), [init])).toMatchObject({
      state: 'at_schema',
      runs: true,
      verdict: 'runs (database at its schema)',
    });
    const expand = applied('0001_expand', 1, { compatibility: 'compatible', release: '0.2.0' });
    expect(replicaSchemaVerdict(replica('0.1.0', 1), [init, expand])).toMatchObject({
      state: 'database_ahead_compatible',
      unknown: ['0001_expand'],
      verdict: 'runs (database ahead, compatible)',
    });
    const contract = applied('0002_contract', 2, {
      compatibility: 'breaking',
      release: '0.3.0',
      oldestCompatible: '0.2.0',
    });
    expect(replicaSchemaVerdict(replica('0.1.0', 1), [init, expand, contract]).verdict).toBe(
      'cannot run: 0002_contract is breaking for 0.1.0, needs >= 0.2.0',
    );
    // 0.2.0 does not know 0002 but is as new as its oldest_compatible.
    expect(replicaSchemaVerdict(replica('0.2.0', 2), [init, expand, contract]).runs).toBe(true);
    expect(replicaSchemaVerdict(replica('0.2.0', 1), [init, applied('0001_x', 1)]).verdict).toBe(
      'cannot run: 0001_x is breaking for 0.2.0 (it declares no compatibility)',
    );
    expect(replicaSchemaVerdict(replica('0.2.0', 2), [init])).toMatchObject({
      state: 'database_behind',
      runs: false,
    });
  });
});

describe('pendingMigrationVerdicts', () => {
  const bundled = (
    name: string,
    idx: number,
    d: Pick<BundledMigration, 'compatibility' | 'release'> & { oldestCompatible?: string },
  ): BundledMigration => ({ name, idx, hash: name, statements: [], reason: 'r', ...d });
  it('judges each pending migration against every replica and the oldest SDK', () => {
    const [expand, contract] = pendingMigrationVerdicts(
      [
        bundled('0001_expand', 1, { compatibility: 'compatible', release: '0.2.0' }),
        bundled('0002_contract', 2, {
          compatibility: 'breaking',
          release: '0.2.0',
          oldestCompatible: '0.2.0',
        }),
      ],
      [
        { replica_id: 'old', version: '0.1.0', schema_version: 1 },
        { replica_id: 'new', version: '0.2.0', schema_version: 3 },
      ],
      '0.1.5',
    );
    expect(expand?.rolling_safe).toBe(true);
    expect(contract?.rolling_safe).toBe(false);
    expect(contract?.replicas).toEqual([
      { replica_id: 'old', version: '0.1.0', compatible: false, why: 'breaking for 0.1.0, needs >= 0.2.0' },
      { replica_id: 'new', version: '0.2.0', compatible: true, why: 'knows it' },
    ]);
    expect(contract?.sdk).toMatchObject({ oldest: '0.1.5', compatible: false });
  });

  it('oldestRelease orders numerically', () => {
    expect(oldestRelease(['0.10.0', '0.9.1', '0.9.10'])).toBe('0.9.1');
    expect(oldestRelease([])).toBeNull();
  });
});

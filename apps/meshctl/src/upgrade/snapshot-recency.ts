import type { AppliedMigration } from '@mesh/db';
import { formatAge } from '../cli/output.ts';
import { describeDiff, diffSchemas, schemasEqual } from '../db/snapshot.ts';
import { listSnapshots } from '../db/snapshot-file.ts';
import type { SnapshotFinding } from './plan.ts';

/**
 * The newest snapshot in `dir` that a rollback could restore right now: its
 * schema is the database's (same migrations, same SQL), it was taken after the
 * last migration was applied, and within `maxAgeMs` of `now` (the database
 * clock, which also stamped the snapshot). `notes` says why the newest
 * others do not count.
 */
export async function recentSnapshot(
  dir: string,
  applied: AppliedMigration[],
  now: Date,
  maxAgeMs: number,
): Promise<{ found: SnapshotFinding | null; notes: string[] }> {
  const lastMigration = Math.max(0, ...applied.map((m) => m.appliedAt.getTime()));
  const notes: string[] = [];
  const list = (await listSnapshots(dir)).reverse();
  for (const s of list) {
    if (!s.header) {
      notes.push(`${s.name}: unreadable (${s.error})`);
      continue;
    }
    const created = Date.parse(s.header.created_at);
    const age = now.getTime() - created;
    const diff = diffSchemas(s.header.schema.migrations, applied);
    let why: string | undefined;
    if (!schemasEqual(diff)) why = `another schema (${describeDiff(diff)})`;
    else if (created < lastMigration) why = 'taken before the last migration was applied';
    else if (age > maxAgeMs) why = `taken ${formatAge(age)} ago`;
    if (!why) {
      return {
        found: {
          name: s.name,
          file: s.file,
          created_at: s.header.created_at,
          age_s: Math.round(age / 1000),
          schema_version: s.header.schema.version,
          taken_now: false,
        },
        notes,
      };
    }
    if (notes.length < 3) notes.push(`${s.name}: ${why}`);
  }
  if (list.length === 0) notes.push(`none in ${dir}`);
  return { found: null, notes };
}

import { colors, table } from '../cli/output.ts';
import type { ReplicaSchemaVerdict } from './compat.ts';

/**
 * The per-replica schema verdicts as a table (`db status`, `doctor`,
 * `upgrade check`): one row per live replica, its release and schema, the
 * applied migrations it does not know, and whether it can run.
 */
export function verdictTable(verdicts: ReplicaSchemaVerdict[]): string {
  return table(
    ['REPLICA', 'VERSION', 'SCHEMA', 'UNKNOWN TO IT', 'VERDICT'],
    verdicts.map((v) => [
      v.replica_id,
      v.version,
      String(v.schema_version),
      v.unknown.length ? v.unknown.join(', ') : '-',
      v.runs ? colors.green(v.verdict) : colors.red(v.verdict),
    ]),
  );
}

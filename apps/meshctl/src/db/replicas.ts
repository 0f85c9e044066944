import type { Sql } from '@mesh/db';
import type { ReplicaInfo } from '@mesh/protocol';

/**
 * Seconds within which a replica must have written its heartbeat row to
 * count as live when meshctl reads `registry_replicas` itself. meshctl does
 * not know the replicas' `--replica-heartbeat` (1 s by default; the registry
 * calls a replica stale after three), so it allows 30 s, as `db restore` does.
 */
export const liveWindowSeconds = 30;

/**
 * The fleet as `registry_replicas` records it, shaped as `GET /admin/replicas`
 * rows, with `live` and `stale` judged by {@link liveWindowSeconds} on the
 * database clock. Empty when the table does not exist (an empty database).
 */
export async function replicasFromDatabase(
  sql: Sql,
  windowSeconds = liveWindowSeconds,
): Promise<ReplicaInfo[]> {
  const [t] = await sql<{ t: string | null }[]>`select to_regclass('registry_replicas')::text as t`;
  if (!t?.t) return [];
  const rows = await sql<(Omit<ReplicaInfo, 'live' | 'stale'> & { recent: boolean })[]>`
    select replica_id, boot_id::text, version, schema_version, main_url, admin_url,
           to_json(started_at)#>>'{}' as started_at, to_json(last_seen_at)#>>'{}' as last_seen_at,
           draining, to_json(draining_since)#>>'{}' as draining_since, to_json(stopped_at)#>>'{}' as stopped_at,
           last_seen_at > now() - make_interval(secs => ${windowSeconds}) as recent
    from registry_replicas order by replica_id`;
  return rows.map(({ recent, ...r }) => ({
    ...r,
    live: r.stopped_at === null && recent,
    stale: r.stopped_at === null && !recent,
  }));
}

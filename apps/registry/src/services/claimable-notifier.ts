import type { Sql } from '@mesh/db';

/** Channel on which every replica hears "n jobs of capability C became claimable" (payload `n:C`). */
export const claimableChannel = 'mesh_claimable';

/**
 * Tells every replica's parked long-poll claims that submissions queued work,
 * after the submissions committed, in statements of its own.
 *
 * Why not `pg_notify` inside the submit's INSERT, as release, force reclaim
 * and the sweeps do: a transaction that notifies holds PostgreSQL's global
 * notify lock from pre-commit until its commit is done, WAL flush included,
 * so concurrent notifying commits cannot share a flush (group commit) and
 * submissions would go one fsync at a time. Here a submission commits as
 * before; then one statement per batch sends one notification per capability
 * (`n:capability`, n = jobs queued since the last one) in a transaction that
 * does not wait for the flush (`synchronous_commit` off: a notification is
 * not data; the jobs it announces are already durable). At most one such
 * statement runs at a time; submissions arriving meanwhile share the next.
 *
 * A notification lost to a crash between the commit and the statement, or to
 * a failed statement, delays pickup until a parked claim's wait ends or the
 * next claim runs; nothing else depends on it.
 */
export class ClaimableNotifier {
  private readonly pending = new Map<string, number>();
  private running = false;
  /** Statements sent (tests, benchmarks). */
  statements = 0;

  constructor(private readonly sql: Sql) {}

  /** Nothing pending and no statement running. */
  get idle(): boolean {
    return !this.running && this.pending.size === 0;
  }

  /** `n` jobs of `capability` were committed as claimable. Never throws, never waits. */
  queued(capability: string, n = 1): void {
    this.pending.set(capability, (this.pending.get(capability) ?? 0) + n);
    if (!this.running) void this.flush();
  }

  private async flush(): Promise<void> {
    this.running = true;
    try {
      while (this.pending.size > 0) {
        const capabilities = [...this.pending.keys()];
        const counts = capabilities.map((c) => this.pending.get(c) as number);
        this.pending.clear();
        this.statements += 1;
        // set_config(…, true) holds for this statement's own transaction, commit included.
        await this.sql`
          select set_config('synchronous_commit', 'off', true),
                 pg_notify(${claimableChannel}, n || ':' || capability)
          from unnest(${capabilities}::text[], ${counts}::int[]) as queued(capability, n)`.catch(() => {});
      }
    } finally {
      this.running = false;
    }
  }
}

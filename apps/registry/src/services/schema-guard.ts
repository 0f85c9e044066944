import { appliedMigrations, blockingMigrations, type Sql } from '@mesh/db';
import type { Logger } from '../logger.ts';
import type { DrainGate } from './drain.ts';
import { Ticker } from './ticker.ts';

/**
 * Watches the migration ledger under a running replica (DESIGN.md §4.8). A
 * newer release may migrate the database while this one serves; when every
 * migration it does not know is compatible with it, it keeps serving. When one
 * is breaking for it, it stops handing out claims and turns not ready (`/ready`
 * 503 naming the migration), and the routes that write answer 503, rather than
 * keep writing under a schema whose meaning changed.
 */
export class SchemaGuard {
  private readonly ticker: Ticker;
  /** Takes a failure caused by an unreachable database (true: handled, counted, not logged here). */
  databaseDown: ((err: unknown) => boolean) | undefined;
  private reason: string | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly known: ReadonlySet<string>,
    private readonly release: string,
    intervalMs: number,
    private readonly gate: DrainGate,
    private readonly logger: Logger,
  ) {
    this.ticker = new Ticker(
      intervalMs,
      () => this.check(),
      (err) => this.databaseDown?.(err) || this.logger.warn({ err }, 'schema check failed'),
    );
  }

  /** Why this replica must not serve, or undefined while the schema is fine for it. */
  get incompatible(): string | undefined {
    return this.reason;
  }

  /** Reads the ledger once; a breaking migration found under this replica blocks it for good. */
  async check(): Promise<void> {
    if (this.reason) return;
    const blocking = blockingMigrations(
      await appliedMigrations(this.sql),
      (m) => this.known.has(m.name),
      this.release,
    );
    const [first] = blocking;
    if (!first) return;
    this.reason =
      `migration ${first.name} was applied under this replica and is breaking for release ${this.release}` +
      `${first.reason ? ` (${first.reason})` : ''}; release ${first.oldestCompatible ?? first.release ?? '(newer)'} or newer can run here`;
    this.logger.error(
      { migration: first.name, oldest_compatible: first.oldestCompatible, release: this.release },
      `${this.reason}: no new claims, /ready answers 503, writes are refused; replace this replica with the new release`,
    );
    await this.gate.enter('schema');
  }

  start(): void {
    this.ticker.start();
  }

  async stop(): Promise<void> {
    await this.ticker.stop();
  }
}

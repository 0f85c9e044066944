import type { Sql } from '@mesh/db';
import type { ReplicaInfo } from '@mesh/protocol';
import type { Identity } from '../identity.ts';
import type { Logger } from '../logger.ts';
import { graceKey } from './agents.ts';
import type { DrainGate } from './drain.ts';
import { Ticker } from './ticker.ts';

/**
 * How many heartbeat intervals a replica may go unheard before it counts as
 * stale (gone) rather than live: for fleet views, `drain --wait`, forgetting
 * a replica, the sweeper's fence and the outage grace. Three was too few: a
 * busy replica on a loaded machine (load average 12 on 2 cores, the test
 * suite) was late past three 200 ms heartbeats, and `meshctl registry drain
 * --all --wait` aborted as if it had gone. With the default 1 s heartbeat a
 * killed replica shows stale after 10 s; the agents' timeout (20 s) stays
 * longer, so an outage shorter than the window costs no agent its health.
 */
export const liveHeartbeats = 10;

/** The live window for a replica heartbeat interval (see `liveHeartbeats`). */
export const liveWindowMs = (heartbeatMs: number): number => heartbeatMs * liveHeartbeats;

/** The registry_settings key of the fleet drain. */
const fleetDrainKey = 'fleet_drain';

export interface FleetDrainState {
  draining: boolean;
  since: string | null;
}

/**
 * This replica's row in `registry_replicas` (DESIGN.md §4.6): written at start,
 * heartbeated on the database clock, marked stopped at shutdown. The heartbeat
 * also reads the fleet drain, so a fleet drain reaches every replica within one
 * interval, and a replica that starts during one comes up draining.
 */
export class ReplicaRegistry {
  private readonly ticker: Ticker;
  /** Takes a failure caused by an unreachable database (true: handled, counted, not logged here). */
  databaseDown: ((err: unknown) => boolean) | undefined;
  /** The grace agents get after the whole registry lost its database (0 = off). */
  outageGraceMs = 0;

  constructor(
    private readonly sql: Sql,
    private readonly identity: Identity,
    private readonly urls: { main: string; admin: string | undefined },
    private readonly intervalMs: number,
    private readonly gate: DrainGate,
    private readonly logger: Logger,
  ) {
    this.ticker = new Ticker(
      this.intervalMs,
      () => this.heartbeat(),
      (err) => this.databaseDown?.(err) || this.logger.warn({ err }, 'replica heartbeat failed'),
    );
  }

  /** Applies a fleet drain in force; call before serving any claim. */
  async syncFleetDrain(): Promise<void> {
    await this.applyFleetDrain(await this.fleetDrain());
  }

  /** Records this process (once its listeners have their ports). */
  async register(): Promise<void> {
    await this.syncFleetDrain();
    await this.sql`
      insert into registry_replicas (replica_id, boot_id, version, schema_version, main_url, admin_url, started_at,
                                     last_seen_at, draining, draining_since, stopped_at)
      values (${this.identity.replicaId}, ${this.identity.bootId}, ${this.identity.version},
              ${this.identity.schemaVersion}, ${this.urls.main}, ${this.urls.admin ?? null}, now(), now(),
              ${this.gate.draining}, ${this.gate.drainingSince}, null)
      on conflict (replica_id) do update set
        boot_id = excluded.boot_id, version = excluded.version, schema_version = excluded.schema_version,
        main_url = excluded.main_url, admin_url = excluded.admin_url, started_at = excluded.started_at,
        last_seen_at = excluded.last_seen_at, draining = excluded.draining,
        draining_since = excluded.draining_since, stopped_at = null`;
  }

  async fleetDrain(): Promise<FleetDrainState> {
    const [row] = await this.sql<{ value: FleetDrainState }[]>`
      select value from registry_settings where key = ${fleetDrainKey}`;
    return row?.value ?? { draining: false, since: null };
  }

  private async applyFleetDrain(state: FleetDrainState): Promise<void> {
    if (state.draining && !this.gate.has('fleet')) {
      this.logger.info({ since: state.since }, 'fleet drain in force: no new claims on this replica');
      await this.gate.enter('fleet');
    } else if (!state.draining && this.gate.has('fleet')) {
      this.logger.info('fleet drain lifted');
      this.gate.leave('fleet');
    }
  }

  /**
   * Writes the current drain state and last_seen (database clock). When this
   * replica had not been heard from for the live window (a database outage or
   * a partition) and no other replica stayed live, the whole registry was
   * away: the same statement starts the outage grace (DESIGN.md §4.7), so no
   * sweep fenced on this heartbeat (services/sweeper.ts) can run between the
   * replica coming back and the grace. An existing longer grace is kept.
   */
  async report(): Promise<void> {
    const id = this.identity.replicaId;
    const window = liveWindowMs(this.intervalMs);
    const [row] = await this.sql<{ updated: number; grace: number }[]>`
      with me as (
        select last_seen_at < now() - ${window}::bigint * interval '1 millisecond' as away
        from registry_replicas where replica_id = ${id} and boot_id = ${this.identity.bootId}
      ), grace as (
        insert into registry_settings (key, value, updated_at)
        select ${graceKey}, jsonb_build_object('until', now() + ${this.outageGraceMs}::bigint * interval '1 millisecond'), now()
        where ${this.outageGraceMs}::bigint > 0 and coalesce((select away from me), false)
          and not exists (select 1 from registry_replicas
                          where replica_id <> ${id} and stopped_at is null
                            and last_seen_at >= now() - ${window}::bigint * interval '1 millisecond')
        on conflict (key) do update set
          value = case when (registry_settings.value->>'until')::timestamptz > (excluded.value->>'until')::timestamptz
                       then registry_settings.value else excluded.value end,
          updated_at = excluded.updated_at
        returning key
      ), updated as (
        update registry_replicas set last_seen_at = now(), draining = ${this.gate.draining},
                                     draining_since = ${this.gate.drainingSince}
        where replica_id = ${id} and boot_id = ${this.identity.bootId}
        returning replica_id
      )
      select (select count(*) from updated)::int as updated, (select count(*) from grace)::int as grace`;
    if (row?.grace) {
      this.logger.info(
        { grace_ms: this.outageGraceMs },
        'database reachable again and no other replica stayed live: outage grace for agents to come back',
      );
    }
    if (!row?.updated) {
      this.logger.error(
        { replica_id: this.identity.replicaId },
        'another process registered with this replica id; replica ids must be unique',
      );
    }
  }

  private async heartbeat(): Promise<void> {
    await this.applyFleetDrain(await this.fleetDrain());
    await this.report();
  }

  start(): void {
    this.ticker.start();
  }

  /** Stops the heartbeat and marks the row stopped. */
  async stop(): Promise<void> {
    await this.ticker.stop();
    await this.sql`
      update registry_replicas set stopped_at = now(), last_seen_at = now(), draining = ${this.gate.draining}
      where replica_id = ${this.identity.replicaId} and boot_id = ${this.identity.bootId}`.catch((err) =>
      this.logger.warn({ err }, 'could not mark the replica stopped'),
    );
  }

  async list(): Promise<ReplicaInfo[]> {
    return this.sql<ReplicaInfo[]>`
      select replica_id, boot_id, version, schema_version, main_url, admin_url,
             to_char(started_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as started_at,
             to_char(last_seen_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as last_seen_at,
             draining,
             to_char(draining_since at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as draining_since,
             to_char(stopped_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as stopped_at,
             stopped_at is null and last_seen_at < now() - ${liveWindowMs(this.intervalMs)}::bigint * interval '1 millisecond' as stale,
             stopped_at is null and last_seen_at >= now() - ${liveWindowMs(this.intervalMs)}::bigint * interval '1 millisecond' as live
      from registry_replicas order by replica_id`;
  }

  /**
   * Removes the row of a replica that is gone (stopped, or stale after a
   * crash), so fleet views and `meshctl doctor` stop reporting it. One
   * conditional statement: a live replica is never forgotten.
   */
  async forget(replicaId: string): Promise<'forgotten' | 'live' | 'not_found'> {
    const deleted = await this.sql`
      delete from registry_replicas
      where replica_id = ${replicaId}
        and not (stopped_at is null
                 and last_seen_at >= now() - ${liveWindowMs(this.intervalMs)}::bigint * interval '1 millisecond')
      returning replica_id`;
    if (deleted.length > 0) return 'forgotten';
    const [row] = await this.sql`select 1 from registry_replicas where replica_id = ${replicaId}`;
    return row ? 'live' : 'not_found';
  }

  /**
   * Sets or lifts the fleet drain. Setting it waits (up to `timeoutMs`) until
   * every live replica has heartbeated after seeing it, each having passed its
   * own drain barrier, so that no claim can commit anywhere in the fleet.
   */
  async setFleetDrain(
    draining: boolean,
    timeoutMs: number,
  ): Promise<{ acknowledged: boolean; pending: string[] }> {
    const [{ set_at }] = (await this.sql<{ set_at: Date }[]>`
      insert into registry_settings (key, value, updated_at)
      values (${fleetDrainKey}, jsonb_build_object('draining', ${draining}::boolean,
              'since', case when ${draining}::boolean then to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') end),
              now())
      on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at
      returning updated_at as set_at`) as unknown as [{ set_at: Date }];
    await this.heartbeat();
    if (!draining) return { acknowledged: true, pending: [] };
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pending = await this.sql<{ replica_id: string }[]>`
        select replica_id from registry_replicas
        where stopped_at is null
          and last_seen_at >= now() - ${liveWindowMs(this.intervalMs)}::bigint * interval '1 millisecond'
          and not (draining and last_seen_at >= ${set_at})`;
      if (pending.length === 0) return { acknowledged: true, pending: [] };
      if (Date.now() >= deadline) return { acknowledged: false, pending: pending.map((p) => p.replica_id) };
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

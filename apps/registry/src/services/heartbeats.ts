import type { Sql } from '@mesh/db';
import type { ResolvedDependency } from '@mesh/protocol';
import { Coalescer } from './coalescer.ts';
import { retryAlone } from './job-common.ts';

/**
 * Heartbeats as shared statements (issue 17). Agents heartbeat all day, each
 * on its own clock; at any moment many of them are waiting on the database, so
 * concurrent heartbeats go to PostgreSQL together, as claims do
 * (coalescer.ts): one statement, one plan, one commit for all of them. Alone,
 * a heartbeat runs at once.
 *
 * Both statements here write heartbeat timestamps only (`updated_at`,
 * `last_full_refresh`), and they run on connections opened with
 * `synchronous_commit = off` (server.ts): their commit does not wait for the
 * WAL flush. The invariant that makes that safe: a heartbeat timestamp is a
 * liveness hint that the next heartbeat (5 s later) rewrites. A crash can lose
 * at most the last fraction of a second of them; an agent whose timestamp went
 * back is at worst marked unhealthy later and registers again (DESIGN.md §4.7's
 * outage grace covers a whole-registry restart). No job state, no status
 * change and no topology change is ever written on these connections.
 */

/** The topology clock's key in registry_settings (agents.ts writes it). */
export const topologyKey = 'topology_changed_at';

export interface FastBeat {
  /** The agent was healthy and is refreshed; false: unknown or unhealthy (410). */
  found: boolean;
  /** The topology changed since the agent's last full heartbeat (202). */
  changed: boolean;
  /** Claimable jobs for the agent's name group, capped at 100. */
  pending: number;
}

export interface Refresh {
  id: string;
  /** The registration's fingerprint (canonical body + SDK version), as stored by the full path. */
  fingerprint: string;
}

export interface Refreshed {
  /** False: not refreshed (unknown, unhealthy or registered differently): take the full path. */
  refreshed: boolean;
  resolved: Record<string, ResolvedDependency[]>;
}

/** Heartbeats one statement serves at most (the ids travel as one array parameter). */
const maxPerStatement = 1_000;

export class Heartbeats {
  /** Requests and the shared statements that served them, by kind (the metrics' coalescing ratio). */
  readonly statementStats = {
    heartbeat: { requests: 0, statements: 0 },
    refresh: { requests: 0, statements: 0 },
  };
  private readonly fast: Coalescer<string, FastBeat>;
  private readonly full: Coalescer<Refresh, Refreshed>;

  /** `sql`: connections meant for heartbeat timestamps only (see the header). */
  constructor(private readonly sql: Sql) {
    // A shared statement PostgreSQL refused is re-run heartbeat by heartbeat
    // (issue 30 finding 4: one bad id failed every heartbeat beside it).
    this.fast = new Coalescer((ids) => this.fastStatement(ids), {
      maxInFlight: 1,
      maxWeight: maxPerStatement,
      alone: retryAlone,
    });
    this.full = new Coalescer((asks) => this.refreshStatement(asks), {
      maxInFlight: 1,
      maxWeight: maxPerStatement,
      alone: retryAlone,
    });
  }

  /**
   * HEAD /heartbeat/{id}: refreshes a healthy agent; see FastBeat. An id no
   * agent can have (PostgreSQL text holds no NUL) is unknown (410) without
   * joining a shared statement, which it would fail.
   */
  beat(agentId: string): Promise<FastBeat> {
    if (agentId.includes('\u0000')) return Promise.resolve({ found: false, changed: false, pending: 0 });
    return this.fast.submit(agentId);
  }

  /**
   * POST /heartbeat of an agent that is healthy and sends the registration it
   * stored last: a refresh of its timestamps, nothing else changes.
   */
  refresh(ask: Refresh): Promise<Refreshed> {
    if (ask.id.includes('\u0000')) return Promise.resolve({ refreshed: false, resolved: {} });
    return this.full.submit(ask);
  }

  /**
   * One statement for many HEAD heartbeats (DESIGN.md §4.2: the WHERE clause
   * holds the precondition, a healthy agent; an unknown or unhealthy one gets
   * no row, hence 410). The topology clock is read once. The pending-work
   * count runs only when some claimable job exists at all (one probe of
   * jobs_claimable_idx per statement), and then once per name group of the
   * statement, not once per heartbeat.
   */
  private async fastStatement(ids: string[]): Promise<FastBeat[]> {
    this.statementStats.heartbeat.statements += 1;
    this.statementStats.heartbeat.requests += ids.length;
    const rows = await this.sql<{ agent_id: string; changed: boolean; pending: number }[]>`
      with touched as (
        update agents set updated_at = now()
        where agent_id = any(${ids}::text[]) and status = 'healthy'
        returning agent_id, name, last_full_refresh
      ), topology as (
        select (value->>'at')::timestamptz as at from registry_settings where key = ${topologyKey}
      ), groups as (
        select distinct name from touched
        where exists (select 1 from jobs
                      where status = 'working' and owner_instance_id is null and attempt_count <= max_retries)
      ), pending as (
        select g.name,
               (select count(*)::int from (
                  select 1 from jobs j
                  where j.status = 'working' and j.owner_instance_id is null and j.attempt_count <= j.max_retries
                    and j.capability in (select c.capability from agent_capabilities c
                                         join agents a on a.agent_id = c.agent_id where a.name = g.name)
                  limit 100) as p) as n
        from groups g
      )
      select t.agent_id, coalesce((select at from topology) > t.last_full_refresh, false) as changed,
             coalesce(p.n, 0) as pending
      from touched t left join pending p on p.name = t.name`;
    const byId = new Map(rows.map((r) => [r.agent_id, r]));
    return ids.map((id) => {
      const r = byId.get(id);
      return r
        ? { found: true, changed: r.changed, pending: r.pending }
        : { found: false, changed: false, pending: 0 };
    });
  }

  /**
   * One statement for many unchanged full heartbeats: refreshes both
   * timestamps of each agent that is healthy and whose stored registration
   * carries the same fingerprint (the precondition in the WHERE clause, so a
   * concurrent registration with another body, an unregister or the health
   * monitor wins, and the request takes the full path).
   */
  private async refreshStatement(asks: Refresh[]): Promise<Refreshed[]> {
    this.statementStats.refresh.statements += 1;
    this.statementStats.refresh.requests += asks.length;
    const rows = await this.sql<
      { agent_id: string; resolved: Record<string, ResolvedDependency[]> | null }[]
    >`
      update agents a set updated_at = now(), last_full_refresh = now()
      from unnest(${asks.map((x) => x.id)}::text[], ${asks.map((x) => x.fingerprint)}::text[]) as r(id, fingerprint)
      where a.agent_id = r.id and a.status = 'healthy' and a.registration->>'fingerprint' = r.fingerprint
      returning a.agent_id, a.registration->'resolved' as resolved`;
    const byId = new Map(rows.map((r) => [r.agent_id, r.resolved ?? {}]));
    return asks.map((ask) => {
      const resolved = byId.get(ask.id);
      return resolved ? { refreshed: true, resolved } : { refreshed: false, resolved: {} };
    });
  }
}

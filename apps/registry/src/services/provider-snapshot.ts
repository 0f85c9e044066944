import type { Sql } from '@mesh/db';
import type { ToolDependency } from '@mesh/protocol';
import { endpointOf, type Provider, Resolver } from './resolution.ts';

/** A provider as read from agent_capabilities joined with its agent. */
export interface ProviderRow {
  agent_id: string;
  status: string;
  http_host: string | null;
  http_port: number | null;
  capability: string;
  function_name: string;
  version: string;
  tags: string[];
  kwargs: Record<string, unknown> | null;
  dependencies: ToolDependency[] | null;
}

export const toProvider = (r: ProviderRow): Provider => ({
  agentId: r.agent_id,
  functionName: r.function_name,
  capability: r.capability,
  version: r.version,
  tags: r.tags ?? [],
  kwargs: r.kwargs,
  endpoint: endpointOf(r.agent_id, r.http_host, r.http_port),
  healthy: r.status === 'healthy',
  dependencies: Array.isArray(r.dependencies) ? r.dependencies : [],
});

/**
 * The providers of `capabilities`, or every provider. The one reader of
 * providers: registration asks by capability (over
 * agent_capabilities_capability_idx, so its cost follows the dependencies it
 * resolves, and it needs no fingerprint scan of the whole registry), listings
 * take every provider through the snapshot below.
 */
export function readProviders(sql: Sql, capabilities?: string[]) {
  return sql<ProviderRow[]>`
    select a.agent_id, a.status, a.http_host, a.http_port, c.capability, c.function_name, c.version, c.tags,
           c.kwargs, c.dependencies
    from agent_capabilities c join agents a on a.agent_id = c.agent_id
    ${capabilities ? sql`where c.capability = any(${capabilities}::text[])` : sql``}`;
}

export interface Snapshot {
  /** What the providers were read under (changes with any of them). */
  fingerprint: string;
  /** Every provider, by agent. */
  byAgent: Map<string, Provider[]>;
  /** Over every provider; its memo (winners, availability) lasts as long as the snapshot. */
  resolver: Resolver;
}

/**
 * Every provider in the registry and a Resolver over them, kept between
 * `GET /agents` listings while nothing that resolution reads has changed, so
 * that a listing of 1,000 agents among 10,000 does not read, parse and
 * resolve 10,000 provider rows each time (issue 17: p99 under 50 ms).
 *
 * Whether it changed is asked of the database on every use, never assumed:
 * one row, the count and a sum of hashes of every capability row's version
 * (`xmin`: any insert or update of a capability gives it a new one, a delete
 * changes the count) and a sum of hashes of every agent's status and
 * endpoint (a heartbeat's timestamps are not in it). This holds across replicas and for
 * writers that know nothing of this cache (0.1.0 replicas in a rolling
 * upgrade), unlike a notification.
 */
export class ProviderSnapshot {
  private current?: Snapshot;

  constructor(private readonly sql: Sql) {}

  async get(): Promise<Snapshot> {
    // Invariant: a listing never resolves against providers older than its
    // own start. The fingerprint is read first and the rows after it, so rows
    // kept under a fingerprint are at least as new as it; a change committed
    // after the read changes the next fingerprint and the next use reloads.
    const [row] = await this.sql<{ fingerprint: string }[]>`
      select (select count(*) || ':' || coalesce(sum(hashtextextended(xmin::text, 0)), 0)
                from agent_capabilities) || '/' ||
             (select coalesce(sum(hashtextextended(
                       agent_id || '|' || status || '|' || coalesce(http_host, '') || '|' || coalesce(http_port::text, ''),
                       0)), 0)
                from agents) as fingerprint`;
    const fingerprint = row?.fingerprint ?? '';
    if (this.current?.fingerprint === fingerprint) return this.current;
    const providers = (await readProviders(this.sql)).map(toProvider);
    const byAgent = new Map<string, Provider[]>();
    for (const p of providers) {
      const list = byAgent.get(p.agentId);
      if (list) list.push(p);
      else byAgent.set(p.agentId, [p]);
    }
    // Two listings that miss at once both load; whichever lands last is kept,
    // and if it is the older one the next fingerprint differs and reloads.
    this.current = { fingerprint, byAgent, resolver: new Resolver(providers) };
    return this.current;
  }
}

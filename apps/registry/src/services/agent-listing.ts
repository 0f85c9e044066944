import type { Sql } from '@mesh/db';
import {
  type AgentInfo,
  limits,
  type ResolvedDependency,
  type ToolDependency,
  type ToolRegistration,
} from '@mesh/protocol';
import type { ProviderSnapshot } from './provider-snapshot.ts';
import { endpointOf, type Provider, type Resolver } from './resolution.ts';

/** An agents row as the listing describes it. */
export interface AgentRow {
  agent_id: string;
  name: string;
  agent_type: string;
  runtime: string | null;
  version: string | null;
  description: string;
  http_host: string | null;
  http_port: number | null;
  status: 'healthy' | 'unhealthy';
  sdk_version: string | null;
  registration: { tools?: ToolRegistration[]; resolved?: Record<string, ResolvedDependency[]> };
  total_dependencies: number;
  dependencies_resolved: number;
  created_at: Date;
  updated_at: Date;
}

export const depsOf = (tool: ToolRegistration): ToolDependency[] =>
  (tool.dependencies ?? []) as ToolDependency[];

/** One listed agent: its description without `last_seen`, and the heartbeat time that completes it. */
export interface ListedAgent {
  described: Described;
  /** `last_seen` (the row's `updated_at`, ISO 8601). */
  lastSeen: string;
}

/** An agent's description, kept between listings while its version is unchanged. */
interface Described {
  /** The row's version (every column the description reads) and the providers' fingerprint. */
  version: string;
  /** `last_seen` holds a mark (agentInfo puts the time in). */
  info: AgentInfo;
  /** The description as JSON text up to `last_seen`'s value, and after it. */
  head: string;
  tail: string;
}

/**
 * SQL: an agents row's version, over every column a description reads but
 * `updated_at` (which heartbeats move; it is sent as it is read): the row's
 * other columns as record text (unambiguous: quoted, NULL distinct from
 * empty), and the registration's own jsonb hash (no text conversion, the
 * costly part). 64 bits: a change that keeps it has odds of 2^-64.
 */
const rowVersion = `(hashtextextended(row(name, agent_type, runtime, version, description, http_host, http_port,
  status, sdk_version, total_dependencies, dependencies_resolved, created_at)::text, 0)
  # jsonb_hash_extended(registration, 0))::text`;

/** Stands for `last_seen` while a description is written as text, then split there. */
const lastSeenMark = '\u0000last_seen\u0000';

/**
 * `GET /agents` (issue 17: under 50 ms p99 with 10,000 agents). A listing of
 * 1,000 agents read, parsed, resolved and described every row each time, and
 * the garbage of it cost as much again in the collector. Now each listed
 * agent's description is kept between listings, with its JSON text, under a
 * version: a hash of every column the description reads but `updated_at`
 * (computed by PostgreSQL on the listed rows), and the providers' fingerprint
 * (provider-snapshot.ts: other agents' status, endpoint and capabilities).
 * A listing reads the listed rows' ids, versions and heartbeat times, reads in
 * full only the rows whose version it has not described, and sends the kept
 * texts with each `last_seen` put in.
 *
 * Invariant: a listing never shows a description older than the row and the
 * providers it read. The version is read from the database on every listing,
 * never assumed (writers on other replicas, older releases, plain SQL); a
 * description is kept under the version of the row it was made from, so a row
 * that changed between the two reads is described anew next time.
 */
export class AgentListing {
  /** By agent id: the last listing's agents only (at most limits.maxAgentsListed). */
  private kept = new Map<string, Described>();

  constructor(
    private readonly sql: Sql,
    private readonly snapshot: ProviderSnapshot,
  ) {}

  /** The oldest limits.maxAgentsListed agents; `truncated`: more exist. */
  async list(): Promise<{ agents: ListedAgent[]; truncated: boolean }> {
    // Two reads at once on two connections: the listed rows' versions, and the
    // providers (unchanged since the last listing, usually: then one row).
    const [rows, snapshot] = await Promise.all([
      this.sql<{ agent_id: string; row_version: string; updated_at: Date }[]>`
        select agent_id, updated_at,
               ${this.sql.unsafe(rowVersion)} as row_version
        from (select * from agents order by created_at, agent_id limit ${limits.maxAgentsListed + 1}) a
        order by created_at, agent_id`,
      this.snapshot.get(),
    ]);
    const truncated = rows.length > limits.maxAgentsListed;
    const listed = rows.slice(0, limits.maxAgentsListed);
    const versionOf = (row: { row_version: string }) => `${row.row_version}/${snapshot.fingerprint}`;
    const kept = new Map<string, Described>();
    const missing: string[] = [];
    for (const row of listed) {
      const d = this.kept.get(row.agent_id);
      if (d?.version === versionOf(row)) kept.set(row.agent_id, d);
      else missing.push(row.agent_id);
    }
    if (missing.length > 0) {
      const full = await this.sql<(AgentRow & { row_version: string })[]>`
        select *, ${this.sql.unsafe(rowVersion)} as row_version
        from agents where agent_id = any(${missing}::text[])`;
      // Resolve everything these descriptions ask about first, yielding as it
      // goes (the snapshot's resolver remembers it for the next listing);
      // describing is then lookups only.
      await snapshot.resolver.prime([
        ...full.flatMap((a) => (a.registration.tools ?? []).flatMap(depsOf)),
        ...full
          .flatMap((a) => (snapshot.byAgent.get(a.agent_id) ?? []).flatMap((p) => p.dependencies))
          .filter((d) => d.required),
      ]);
      for (const row of full) {
        kept.set(row.agent_id, described(row, versionOf(row), snapshot.byAgent, snapshot.resolver));
      }
    }
    this.kept = kept;
    const agents: ListedAgent[] = [];
    for (const row of listed) {
      // An agent gone between the two reads (rows are never deleted today) is left out.
      const d = kept.get(row.agent_id);
      if (d) agents.push({ described: d, lastSeen: row.updated_at.toISOString() });
    }
    return { agents, truncated };
  }
}

/** A listed agent in MCP Mesh 3.7's shape. */
export const agentInfo = (a: ListedAgent): AgentInfo => ({ ...a.described.info, last_seen: a.lastSeen });

/** Listed agents as the JSON text of an array (`null` when there are none, as 3.7 answers). */
export const agentsJson = (agents: ListedAgent[]): string =>
  agents.length === 0
    ? 'null'
    : `[${agents.map((a) => `${a.described.head}${JSON.stringify(a.lastSeen)}${a.described.tail}`).join(',')}]`;

function described(
  a: AgentRow,
  version: string,
  byAgent: Map<string, Provider[]>,
  resolver: Resolver,
): Described {
  const mine = byAgent.get(a.agent_id) ?? [];
  const reg = a.registration;
  const resolutions: NonNullable<AgentInfo['dependency_resolutions']> = [];
  for (const tool of reg.tools ?? []) {
    const declared = depsOf(tool);
    declared.forEach((d, i) => {
      const now = resolver.best(d);
      const before = reg.resolved?.[tool.function_name ?? '']?.[i];
      const tags = (d.tags ?? []).filter((t): t is string => typeof t === 'string');
      if (now) {
        resolutions.push({
          function_name: tool.function_name ?? '',
          capability: d.capability ?? '',
          tags,
          mcp_tool: now.functionName,
          provider_agent_id: now.agentId,
          endpoint: now.endpoint,
          status: 'available',
        });
      } else {
        resolutions.push({
          function_name: tool.function_name ?? '',
          capability: d.capability ?? '',
          tags,
          status: before?.status === 'available' ? 'unavailable' : 'unresolved',
        });
      }
    });
  }
  const info: AgentInfo = {
    id: a.agent_id,
    name: a.name,
    agent_type: a.agent_type,
    runtime: a.runtime ?? '',
    status: a.status,
    endpoint: endpointOf(a.agent_id, a.http_host, a.http_port),
    version: a.version ?? '',
    description: a.description,
    a2a_producer: false,
    a2a_consumer: false,
    created_at: a.created_at.toISOString(),
    last_seen: lastSeenMark,
    total_dependencies: a.total_dependencies,
    dependencies_resolved: a.dependencies_resolved,
    capabilities: mine.length
      ? mine.map((p) => {
          const reason = resolver.unavailableReason(p);
          return {
            name: p.capability,
            function_name: p.functionName,
            version: p.version,
            description: '',
            tags: p.tags,
            available: reason === undefined,
            ...(reason ? { unavailable_reason: reason } : {}),
            ...(p.kwargs?.task === true ? { task: true } : {}),
          };
        })
      : null,
    dependency_resolutions: resolutions.length ? resolutions : null,
    llm_tool_resolutions: null,
    llm_provider_resolutions: null,
    sdk_version: a.sdk_version,
  };
  const [head = '', tail = ''] = JSON.stringify(info).split(JSON.stringify(lastSeenMark));
  return { version, info, head, tail };
}

import { createHash } from 'node:crypto';
import type { Sql } from '@mesh/db';
import {
  type AgentRegistration,
  agentIdentifierPattern,
  limits,
  type RegistrationResponse,
  type ResolvedDependency,
  type ToolRegistration,
} from '@mesh/protocol';
import type postgres from 'postgres';
import { ApiError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { AgentListing, depsOf, type ListedAgent } from './agent-listing.ts';
import { isHostOnly } from './cancel-forward.ts';
import { Heartbeats, topologyKey } from './heartbeats.ts';
import { canonical } from './jobs.ts';
import { ProviderSnapshot, readProviders, toProvider } from './provider-snapshot.ts';
import { type Provider, Resolver } from './resolution.ts';

/** registry_settings keys (the topology clock's is in heartbeats.ts). */
export const graceKey = 'outage_grace_until';

/** SQL: true while the registry is in its post-outage grace (DESIGN.md §4.7). */
export const inOutageGrace = `exists (select 1 from registry_settings
  where key = '${graceKey}' and (value->>'until')::timestamptz > now())`;

/** This replica, and how recent its fleet heartbeat must be for it to act on others (§4.7). */
export interface LiveFence {
  replicaId: string;
  liveWindowMs: number;
}

/**
 * SQL: `and` this replica's own fleet heartbeat is current, or nothing
 * without a fence. The sweeps and the health monitor act on other processes'
 * rows only through it: a replica back from an outage has a stale heartbeat
 * until its first report, which starts the outage grace in its statement.
 */
export function liveFence(sql: Sql, fence: LiveFence | undefined) {
  if (!fence) return sql``;
  return sql`and exists (select 1 from registry_replicas
    where replica_id = ${fence.replicaId} and stopped_at is null
      and last_seen_at >= now() - ${fence.liveWindowMs}::bigint * interval '1 millisecond')`;
}

const idPattern = agentIdentifierPattern;

interface StoredRegistration {
  tools: ToolRegistration[];
  resolved: Record<string, ResolvedDependency[]>;
  /**
   * What the registration said (registrationFingerprint): a full heartbeat that
   * says the same again only refreshes timestamps. Older releases neither write
   * nor read it; a row without it takes the full path.
   */
  fingerprint?: string;
}

/** The fingerprint of a registration: its body as sent (canonical JSON) and the SDK version header. */
export function registrationFingerprint(body: AgentRegistration, sdkVersion: string | null): string {
  return createHash('sha256').update(canonical({ body, sdkVersion })).digest('base64url');
}

export interface AgentSettings {
  /** Seconds without a heartbeat before an agent turns unhealthy (MCP's DEFAULT_TIMEOUT_THRESHOLD). */
  timeoutThresholdSeconds: number;
}

const tooLong = (value: string | null | undefined) => (value?.length ?? 0) > limits.maxIdentifierLength;

/**
 * The bounds of a registration (issue 18), checked before anything is read or
 * written: a caller on the anonymous main port must not be able to make one
 * registration expensive for everyone. Refused whole with 400, the wire body.
 */
export function checkRegistration(body: AgentRegistration): void {
  const fail = (message: string): never => {
    throw new ApiError('bad_request', message);
  };
  const max = limits.maxIdentifierLength;
  for (const field of ['agent_id', 'name', 'namespace', 'version', 'agent_type', 'runtime'] as const) {
    if (tooLong(body[field])) fail(`${field} must be at most ${max} characters`);
  }
  const host = body.http_host ?? '';
  if (host !== '' && !isHostOnly(host)) {
    fail('http_host must be a host name or an IP address, without scheme, port, path, userinfo or fragment');
  }
  if (body.http_port != null && body.http_port > 65535) fail('http_port must be at most 65535');
  const tools = body.tools ?? [];
  if (tools.length > limits.maxToolsPerAgent) {
    fail(`at most ${limits.maxToolsPerAgent} tools per agent, got ${tools.length}`);
  }
  tools.forEach((t, i) => {
    for (const field of ['function_name', 'capability', 'version'] as const) {
      if (tooLong(t[field])) fail(`tools[${i}].${field} must be at most ${max} characters`);
    }
    const tags = t.tags ?? [];
    if (tags.length > limits.maxTags) fail(`tools[${i}].tags: at most ${limits.maxTags} tags`);
    if (tags.some(tooLong)) fail(`tools[${i}].tags: a tag must be at most ${max} characters`);
    const deps = t.dependencies ?? [];
    if (deps.length > limits.maxDependenciesPerTool) {
      fail(`tools[${i}].dependencies: at most ${limits.maxDependenciesPerTool} dependencies per tool`);
    }
    deps.forEach((d, j) => {
      for (const field of ['capability', 'version', 'namespace'] as const) {
        if (tooLong(d[field]))
          fail(`tools[${i}].dependencies[${j}].${field} must be at most ${max} characters`);
      }
      const flat = (d.tags ?? []).flat();
      if (flat.length > limits.maxTags)
        fail(`tools[${i}].dependencies[${j}].tags: at most ${limits.maxTags} tags`);
      if (flat.some(tooLong))
        fail(`tools[${i}].dependencies[${j}].tags: a tag must be at most ${max} characters`);
    });
  });
}

const sameJson = (a: unknown, b: unknown) => canonical(a) === canonical(b);

/**
 * Agents: registration and full heartbeat (POST), fast heartbeat (HEAD),
 * listing in the shape `meshctl` 3.7.1 reads, unregister, the health monitor
 * and the topology clock behind HEAD's 202.
 */
export class AgentStore {
  /** Shared heartbeat statements (heartbeats.ts); their counts feed the coalescing metrics. */
  readonly heartbeats: Heartbeats;
  /** GET /agents, its descriptions kept between listings (agent-listing.ts). */
  private readonly listing: AgentListing;

  /**
   * @param beatSql connections for heartbeat timestamps only, opened with
   *   `synchronous_commit = off` by the server (heartbeats.ts says why that is
   *   safe); `sql` when not given.
   */
  constructor(
    private readonly sql: Sql,
    private readonly settings: AgentSettings,
    private readonly logger: Logger,
    beatSql: Sql = sql,
  ) {
    this.heartbeats = new Heartbeats(beatSql);
    this.listing = new AgentListing(sql, new ProviderSnapshot(sql));
  }

  /**
   * The providers dependency resolution needs: those of `capabilities`, then
   * those of their own required dependencies, and so on (availability is
   * transitive). Read by capability, not from the listings' snapshot: the
   * cost follows the dependencies asked about, not the whole registry.
   */
  private async providers(capabilities: Iterable<string>): Promise<Provider[]> {
    const out: Provider[] = [];
    const seen = new Set<string>();
    let next = [...new Set(capabilities)].filter((c) => c !== '');
    while (next.length > 0) {
      for (const c of next) seen.add(c);
      const rows = await readProviders(this.sql, next);
      const more = new Set<string>();
      for (const r of rows) {
        const provider = toProvider(r);
        out.push(provider);
        for (const d of provider.dependencies) {
          const c = d?.required ? d.capability : undefined;
          if (c && !seen.has(c)) more.add(c);
        }
      }
      next = [...more];
    }
    return out;
  }

  /** POST /heartbeat: registers a new agent or refreshes one; always leaves it healthy. */
  async register(body: AgentRegistration, sdkVersion: string | null): Promise<RegistrationResponse> {
    checkRegistration(body);
    const agentId = (body.agent_id ?? '').trim();
    const timestamp = () => new Date().toISOString();
    const fingerprint = registrationFingerprint(body, sdkVersion);
    const tools = body.tools ?? [];
    // The same registration again from a healthy agent (an SDK's periodic full
    // heartbeat): a shared timestamp refresh, then the dependencies resolved afresh.
    const refresh = agentId ? await this.heartbeats.refresh({ id: agentId, fingerprint }) : undefined;
    if (refresh?.refreshed) {
      const { resolved, total, ok } = await this.resolveTools(tools);
      if (!sameJson(resolved, refresh.resolved)) {
        await this.storeResolution(agentId, { tools, resolved, fingerprint }, total, ok);
      }
      return {
        agent_id: agentId,
        status: 'success',
        message: 'Agent updated via heartbeat',
        timestamp: timestamp(),
        dependencies_resolved: resolved,
        llm_tools: {},
      };
    }
    const error = (message: string): RegistrationResponse => ({
      agent_id: agentId,
      status: 'error',
      message,
      timestamp: timestamp(),
    });
    const [existing] = await this.sql<
      { status: string }[]
    >`select status from agents where agent_id = ${agentId}`;
    const name = body.name?.trim() || agentId;
    const namespace = body.namespace?.trim() || 'default';
    if (!existing) {
      // Validation happens on first registration only (MCP Mesh §1.4), answered with HTTP 200.
      for (const [field, value, max] of [
        ['agent_id', agentId, 253],
        ['name', name, 63],
        ['namespace', namespace, 63],
      ] as const) {
        if (!idPattern.test(value) || value.length > max) {
          return error(
            `validation failed: ${field}: ${field} must contain only lowercase alphanumeric characters and hyphens` +
              ` (at most ${max} characters)`,
          );
        }
      }
    }
    const description = (body.description ?? '').trim().slice(0, 256);
    await this.sql.begin(async (tx) => {
      await tx`
        insert into agents (agent_id, name, agent_type, runtime, version, description, namespace, http_host, http_port,
                            status, sdk_version, created_at, updated_at, last_full_refresh, registration)
        values (${agentId}, ${name}, ${body.agent_type ?? 'mcp_agent'}, ${body.runtime ?? 'python'},
                ${body.version || null}, ${description}, ${namespace}, ${body.http_host || null},
                ${body.http_port && body.http_port > 0 ? body.http_port : null}, 'healthy', ${sdkVersion},
                now(), now(), now(),
                ${tx.json({ tools, resolved: {}, fingerprint } as never)})
        on conflict (agent_id) do update set
          status = 'healthy', updated_at = now(), last_full_refresh = now(), sdk_version = excluded.sdk_version,
          -- The tools and their fingerprint change with the capabilities, in this
          -- transaction: a later full heartbeat with the same fingerprint may then
          -- skip rewriting them. The resolution follows (storeResolution).
          registration = jsonb_build_object('tools', excluded.registration->'tools',
                                            'resolved', coalesce(agents.registration->'resolved', '{}'::jsonb),
                                            'fingerprint', excluded.registration->'fingerprint'),
          description = excluded.description,
          version = coalesce(excluded.version, agents.version),
          http_host = coalesce(excluded.http_host, agents.http_host),
          http_port = coalesce(excluded.http_port, agents.http_port),
          agent_type = case when excluded.agent_type <> 'mcp_agent' then excluded.agent_type else agents.agent_type end,
          runtime = case when excluded.runtime <> 'python' then excluded.runtime else agents.runtime end,
          name = case when excluded.name <> excluded.agent_id then excluded.name else agents.name end,
          namespace = case when excluded.namespace <> 'default' then excluded.namespace else agents.namespace end`;
      await tx`delete from agent_capabilities where agent_id = ${agentId}`;
      // All tools in one statement (issue 18: one INSERT per tool let a single
      // registration hold a transaction for seconds). checkRegistration ran first,
      // so a refused registration changes nothing (DESIGN.md §4.10).
      if (tools.length > 0) {
        const rows = tools.map((t, n) => ({
          n,
          capability: t.capability ?? t.function_name ?? '',
          function_name: t.function_name ?? '',
          version: t.version || '1.0.0',
          description: t.description ?? null,
          tags: t.tags ?? [],
          dependencies: t.dependencies ?? null,
          kwargs: t.kwargs ?? null,
        }));
        await tx`
          insert into agent_capabilities (agent_id, capability, function_name, version, description, tags,
                                          dependencies, kwargs)
          select ${agentId}, r.capability, r.function_name, r.version, r.description, r.tags,
                 nullif(r.dependencies, 'null'::jsonb), nullif(r.kwargs, 'null'::jsonb)
          from jsonb_to_recordset(${tx.json(rows as never)}) as r(
                 n int, capability text, function_name text, version text, description text, tags jsonb,
                 dependencies jsonb, kwargs jsonb)
          order by r.n`;
      }
      // A new agent, or one coming back from unhealthy, changes the topology.
      if (existing?.status !== 'healthy') await this.bumpTopology(tx);
    });

    const { resolved, total, ok } = await this.resolveTools(tools);
    await this.storeResolution(agentId, { tools, resolved, fingerprint }, total, ok);
    return {
      agent_id: agentId,
      status: 'success',
      message: existing ? 'Agent updated via heartbeat' : 'Agent registered via heartbeat',
      timestamp: timestamp(),
      dependencies_resolved: resolved,
      llm_tools: {},
    };
  }

  /** Resolves every tool's declared dependencies against the providers registered now. */
  private async resolveTools(
    tools: ToolRegistration[],
  ): Promise<{ resolved: Record<string, ResolvedDependency[]>; total: number; ok: number }> {
    const resolved: Record<string, ResolvedDependency[]> = {};
    let total = 0;
    let ok = 0;
    const wanted = tools.flatMap((t) => depsOf(t).map((d) => d.capability ?? ''));
    if (wanted.length === 0) return { resolved, total, ok };
    const resolver = new Resolver(await this.providers(wanted));
    for (const t of tools) {
      const deps = depsOf(t);
      if (deps.length === 0) continue;
      const r = await resolver.resolveAllAsync(deps);
      resolved[t.function_name ?? ''] = r;
      total += r.length;
      ok += r.filter((x) => x.status === 'available').length;
    }
    return { resolved, total, ok };
  }

  /**
   * Stores a registration's resolution, unless another registration of the
   * agent (another fingerprint) committed meanwhile: its own resolution wins,
   * and the stored tools always match the agent's capabilities.
   */
  private async storeResolution(
    agentId: string,
    stored: StoredRegistration & { fingerprint: string },
    total: number,
    ok: number,
  ): Promise<void> {
    await this.sql`
      update agents set registration = ${this.sql.json(stored as never)}, total_dependencies = ${total},
                        dependencies_resolved = ${ok}
      where agent_id = ${agentId} and registration->>'fingerprint' = ${stored.fingerprint}`;
  }

  private async bumpTopology(tx: postgres.TransactionSql | Sql): Promise<void> {
    await tx`
      insert into registry_settings (key, value, updated_at)
      values (${topologyKey}, jsonb_build_object('at', now()), now())
      on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at`;
  }

  /**
   * HEAD /heartbeat/{id}: refreshes a healthy agent, tells it whether the
   * topology changed since its last full heartbeat (202), and counts claimable
   * work for its name group (capped at 100). Unknown or unhealthy: 410.
   * Concurrent heartbeats share one statement (heartbeats.ts).
   */
  async fastHeartbeat(agentId: string): Promise<{ status: 200 | 202 | 410; pending: number }> {
    const beat = await this.heartbeats.beat(agentId);
    if (!beat.found) return { status: 410, pending: 0 };
    return { status: beat.changed ? 202 : 200, pending: beat.pending };
  }

  /** DELETE /agents/{id}: marks the agent unhealthy (kept for the orphan sweep); idempotent. */
  async unregister(agentId: string): Promise<void> {
    await this.sql.begin(async (tx) => {
      const gone =
        await tx`update agents set status = 'unhealthy' where agent_id = ${agentId} and status = 'healthy'
                            returning agent_id`;
      if (gone.length) await this.bumpTopology(tx);
    });
  }

  /**
   * Health monitor tick: agents silent for longer than the threshold turn
   * unhealthy, one conditional statement safe on every replica. Never during
   * the post-outage grace, when agents have had no registry to heartbeat to.
   */
  async markSilentUnhealthy(fence?: LiveFence): Promise<string[]> {
    // One statement. Invariants: an agent is marked only past its timeout and
    // outside the outage grace; and (fenced, as the sweeps are) only while
    // this replica's own fleet heartbeat is current. A replica back from a
    // database outage has a stale heartbeat until its first report, which
    // starts the grace in the same statement (replicas.ts `report`): the
    // health check cannot run in between (issue 29: agents were marked
    // unhealthy before the grace began).
    const rows = await this.sql<{ agent_id: string }[]>`
      update agents set status = 'unhealthy'
      where status = 'healthy' and updated_at < now() - make_interval(secs => ${this.settings.timeoutThresholdSeconds}::int)
        and not ${this.sql.unsafe(inOutageGrace)}
        ${liveFence(this.sql, fence)}
      returning agent_id`;
    if (rows.length) {
      await this.bumpTopology(this.sql);
      this.logger.info({ agents: rows.map((r) => r.agent_id) }, 'agents turned unhealthy (no heartbeat)');
    }
    return rows.map((r) => r.agent_id);
  }

  /**
   * At boot: if no other replica is live, the whole registry was down, and
   * agents get `graceMs` to come back before the health monitor, the orphan
   * sweep or the lease sweep may act on them (reference §11 item 4).
   */
  async startOutageGraceIfAlone(replicaId: string, liveWithinMs: number, graceMs: number): Promise<boolean> {
    if (graceMs <= 0) return false;
    const rows = await this.sql`
      insert into registry_settings (key, value, updated_at)
      select ${graceKey}, jsonb_build_object('until', now() + ${graceMs}::bigint * interval '1 millisecond'), now()
      where not exists (select 1 from registry_replicas
                        where replica_id <> ${replicaId} and stopped_at is null
                          and last_seen_at >= now() - ${liveWithinMs}::bigint * interval '1 millisecond')
      on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at
      returning key`;
    return rows.length > 0;
  }

  /** Where to tell an agent about a cancel: its HTTP host and port, if it registered both. */
  async endpoint(agentId: string): Promise<{ host: string; port: number } | undefined> {
    const [row] = await this.sql<{ http_host: string | null; http_port: number | null }[]>`
      select http_host, http_port from agents where agent_id = ${agentId}`;
    return row?.http_host && row.http_port ? { host: row.http_host, port: row.http_port } : undefined;
  }

  /** GET /agents in MCP Mesh 3.7's shape (what `meshctl list` and `status` decode): agent-listing.ts. */
  list(): Promise<{ agents: ListedAgent[]; truncated: boolean }> {
    return this.listing.list();
  }
}

import type { ResolvedDependency, ToolDependency } from '@mesh/protocol';
import semver from 'semver';

/** A capability some agent provides, as dependency resolution sees it. */
export interface Provider {
  agentId: string;
  functionName: string;
  capability: string;
  version: string;
  tags: string[];
  kwargs: Record<string, unknown> | null;
  endpoint: string;
  healthy: boolean;
  /** The provider's own dependencies (its `required` ones gate its availability). */
  dependencies: ToolDependency[];
}

/** `http://host:port`, or `stdio://<id>` for an agent without an HTTP endpoint (MCP Mesh §1.6). */
export const endpointOf = (agentId: string, host: string | null, port: number | null): string =>
  host && port ? `http://${host}:${port}` : `stdio://${agentId}`;

/**
 * Tag score of a provider for a dependency's tags (MCP Mesh §1.8): a plain tag
 * is required (+5), `+t` preferred (+10 when present), `-t` excluded; an inner
 * array is an OR group (+5, or +10 when the match is a `+` member). `null` =
 * the provider does not qualify.
 */
export function tagScore(wanted: (string | string[])[], have: string[]): number | null {
  const set = new Set(have);
  let score = 0;
  for (const item of wanted) {
    if (typeof item === 'string') {
      if (item.startsWith('-')) {
        if (set.has(item.slice(1))) return null;
      } else if (item.startsWith('+')) {
        if (set.has(item.slice(1))) score += 10;
      } else if (set.has(item)) score += 5;
      else return null;
      continue;
    }
    if (item.some((m) => m.startsWith('-') && set.has(m.slice(1)))) return null;
    const positives = item.filter((m) => !m.startsWith('-'));
    const hit = positives.find((m) => set.has(m.replace(/^\+/, '')));
    if (positives.length > 0 && hit === undefined) return null;
    if (hit !== undefined) score += hit.startsWith('+') ? 10 : 5;
  }
  return score;
}

/** Whether a provider version meets a constraint; unparseable semver falls back to equality. */
export function versionMatches(constraint: string, version: string): boolean {
  if (!version) return false;
  if (semver.valid(version) && semver.validRange(constraint)) return semver.satisfies(version, constraint);
  return constraint === version;
}

/**
 * Parsed versions and ranges, each string parsed once per Resolver: a listing
 * compares the versions of every provider of a capability, and parsing them at
 * each comparison was most of GET /agents' time with 10,000 agents (issue 17).
 */
class Versions {
  private readonly parsed = new Map<string, semver.SemVer | null>();
  private readonly ranges = new Map<string, semver.Range | null>();

  private version(v: string): semver.SemVer | null {
    let out = this.parsed.get(v);
    if (out === undefined) {
      out = semver.valid(v) ? new semver.SemVer(v) : null;
      this.parsed.set(v, out);
    }
    return out;
  }

  private range(r: string): semver.Range | null {
    let out = this.ranges.get(r);
    if (out === undefined) {
      out = semver.validRange(r) ? new semver.Range(r) : null;
      this.ranges.set(r, out);
    }
    return out;
  }

  /** As versionMatches. */
  matches(constraint: string, version: string): boolean {
    if (!version) return false;
    const v = this.version(version);
    const r = v ? this.range(constraint) : null;
    if (v && r) return r.test(v);
    return constraint === version;
  }

  /** Semver order when both parse, else string order. */
  compare(a: string, b: string): number {
    const va = this.version(a);
    const vb = va ? this.version(b) : null;
    return va && vb ? va.compare(vb) : a.localeCompare(b);
  }
}

/**
 * Resolves dependencies against the known providers. A provider is available
 * when its agent is healthy and each of its `required` dependencies resolves to
 * an available provider, transitively (cycles count as unavailable).
 */
export class Resolver {
  private readonly byCapability = new Map<string, Provider[]>();
  private readonly availability = new Map<Provider, boolean>();
  /** Winners of dependencies already resolved, by (capability, tags, version): repeats cost nothing. */
  private readonly winners = new Map<string, Provider | undefined>();
  private readonly versions = new Versions();
  /**
   * Providers examined so far: callers resolving many dependencies yield to
   * the event loop every so many (`resolveAllAsync`).
   */
  work = 0;

  constructor(providers: Provider[]) {
    for (const p of providers) {
      const list = this.byCapability.get(p.capability) ?? [];
      list.push(p);
      this.byCapability.set(p.capability, list);
    }
  }

  available(p: Provider, visiting = new Set<Provider>()): boolean {
    const known = this.availability.get(p);
    if (known !== undefined) return known;
    if (!p.healthy) return false;
    if (visiting.has(p)) return false;
    visiting.add(p);
    const ok = p.dependencies.filter((d) => d.required).every((d) => this.best(d, visiting) !== undefined);
    visiting.delete(p);
    this.availability.set(p, ok);
    return ok;
  }

  /** Why a provider is unavailable, for `/agents` (`undefined` when it is available). */
  unavailableReason(p: Provider): string | undefined {
    if (!p.healthy) return 'agent unhealthy';
    const broken = p.dependencies.find((d) => d.required && this.best(d) === undefined);
    return broken ? `required dep '${broken.capability}' unresolved` : undefined;
  }

  /** The winning provider: highest tag score, then highest version, then agent id. */
  best(dep: ToolDependency, visiting = new Set<Provider>()): Provider | undefined {
    // Only outside a cycle check is the answer independent of the path taken to it.
    const key =
      visiting.size === 0 ? JSON.stringify([dep.capability ?? '', dep.tags ?? [], dep.version ?? '']) : '';
    if (key && this.winners.has(key)) return this.winners.get(key);
    const found = this.scan(dep, visiting);
    if (key) this.winners.set(key, found);
    return found;
  }

  private scan(dep: ToolDependency, visiting: Set<Provider>): Provider | undefined {
    let winner: { p: Provider; score: number } | undefined;
    for (const p of this.byCapability.get(dep.capability ?? '') ?? []) {
      this.work += 1;
      if (!this.available(p, visiting)) continue;
      const score = dep.tags?.length ? tagScore(dep.tags, p.tags) : 0;
      if (score === null) continue;
      if (dep.version && !this.versions.matches(dep.version, p.version)) continue;
      if (!winner || score > winner.score) {
        winner = { p, score };
        continue;
      }
      if (score < winner.score) continue;
      const order = this.versions.compare(p.version, winner.p.version);
      if (order > 0 || (order === 0 && p.agentId < winner.p.agentId)) winner = { p, score };
    }
    return winner?.p;
  }

  /**
   * Resolves `deps` (memoised for later `best` calls), yielding to the event
   * loop after every `slice` providers examined, so that a large registration
   * or listing never holds the process for long (issue 18).
   */
  async prime(deps: Iterable<ToolDependency>, slice = 2_000): Promise<void> {
    let mark = this.work;
    for (const d of deps) {
      this.best(d);
      if (this.work - mark >= slice) {
        await new Promise((r) => setImmediate(r));
        mark = this.work;
      }
    }
  }

  /** `resolveAll`, without holding the event loop for long (see `prime`). */
  async resolveAllAsync(deps: ToolDependency[], slice = 2_000): Promise<ResolvedDependency[]> {
    await this.prime(deps, slice);
    return this.resolveAll(deps);
  }

  /** One element per declared dependency, in order, with the 3.7 placeholder for unresolved ones. */
  resolveAll(deps: ToolDependency[]): ResolvedDependency[] {
    return deps.map((d) => {
      const p = this.best(d);
      if (!p)
        return {
          agent_id: '',
          function_name: '',
          endpoint: '',
          capability: d.capability ?? '',
          status: 'unresolved',
        };
      return {
        agent_id: p.agentId,
        function_name: p.functionName,
        endpoint: p.endpoint,
        capability: p.capability,
        status: 'available',
        ...(p.kwargs && Object.keys(p.kwargs).length ? { kwargs: p.kwargs } : {}),
      };
    });
  }
}

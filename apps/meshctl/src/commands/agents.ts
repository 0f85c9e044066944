import type { AgentInfo, AgentsListResponse } from '@mesh/protocol';
import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../cli/connection.ts';
import { type Context, run } from '../cli/context.ts';
import { CliError, ConnectionError } from '../cli/errors.ts';
import type { RegistryHttp } from '../cli/http.ts';
import { colors, formatAge, table } from '../cli/output.ts';

/** An agent as `GET /agents` lists it; fields other registries may omit are optional. */
type Agent = Partial<AgentInfo> & Pick<AgentInfo, 'id'>;

const isLive = (a: Agent) => ['healthy', 'running'].includes(String(a.status ?? '').toLowerCase());

const runtimeName = (r: string | undefined | null) => {
  const v = (r ?? '').toLowerCase();
  if (v.startsWith('py')) return 'Python';
  if (v.startsWith('ty') || v === 'ts' || v === 'node') return 'TypeScript';
  if (v.startsWith('ja')) return 'Java';
  return '-';
};

const typeName = (t: string | undefined) =>
  ({ mcp_agent: 'Agent', decorator_agent: 'Agent', api: 'API', a2a: 'A2A', mesh_tool: 'Tool' })[t ?? ''] ??
  'Unknown';

const statusColour = (s: string) =>
  ['healthy', 'running'].includes(s.toLowerCase())
    ? colors.green(s)
    : ['unhealthy', 'failed', 'error'].includes(s.toLowerCase())
      ? colors.red(s)
      : colors.yellow(s);

const hostPort = (endpoint: string | undefined) => {
  if (!endpoint) return '-';
  if (endpoint.startsWith('stdio')) return 'stdio';
  try {
    return new URL(endpoint).host;
  } catch {
    return endpoint;
  }
};

const userCaps = (a: Agent) => (a.capabilities ?? []).filter((c) => !c.function_name?.startsWith('__mesh_'));

function deps(a: Agent): string {
  const total = a.total_dependencies ?? 0;
  const resolved = a.dependencies_resolved ?? 0;
  const text = `${resolved}/${total}`;
  if (total === 0 || resolved === total) return colors.green(text);
  return resolved === 0 ? colors.red(text) : colors.yellow(text);
}

const ageOf = (iso: string | undefined | null) => (iso ? formatAge(Date.now() - Date.parse(iso)) : '-');

/**
 * meshctl 3.7.1's supersession: a non-live instance is superseded when a
 * newer instance of the same name exists and no live agent waits on a
 * capability only it declares.
 */
function supersededIds(agents: Agent[]): Set<string> {
  const out = new Set<string>();
  const wanted = new Set(
    agents
      .filter(isLive)
      .flatMap((a) => a.dependency_resolutions ?? [])
      .filter((d) => d.status !== 'available')
      .map((d) => d.capability),
  );
  const key = (a: Agent): [number, number] => [
    Date.parse(a.created_at ?? '') || 0,
    Date.parse(a.last_seen ?? '') || 0,
  ];
  for (const a of agents) {
    if (isLive(a)) continue;
    const [c, l] = key(a);
    const newer = agents.some((b) => {
      if (b.id === a.id || b.name !== a.name) return false;
      const [bc, bl] = key(b);
      return bc > c || (bc === c && bl > l);
    });
    if (newer && !userCaps(a).some((cap) => wanted.has(cap.name))) out.add(a.id);
  }
  return out;
}

async function fetchAgents(http: RegistryHttp): Promise<Agent[]> {
  const res = await http.get('/agents');
  if (res.status === 404) return [];
  if (res.status !== 200) throw new CliError(`registry returned status ${res.status}: ${res.text.trim()}`);
  const body = res.json<AgentsListResponse>();
  return [...((body.agents ?? []) as Agent[])].sort((a, b) => a.id.localeCompare(b.id));
}

// ─── list ────────────────────────────────────────────────────────────────────

interface ListArgs extends GlobalArgs {
  all?: boolean;
  wide?: boolean;
  filter?: string;
}

const listCommand: CommandModule<GlobalArgs, ListArgs> = {
  command: 'list',
  describe: 'List registered agents (healthy ones unless --all)',
  builder: (y) =>
    y
      .option('all', { type: 'boolean', describe: 'Show every agent, unhealthy and superseded too' })
      .option('wide', { type: 'boolean', describe: 'Add the capabilities column' })
      .option('filter', { type: 'string', describe: 'Only agents whose id contains this text' })
      .example('$0 list', '')
      .example('$0 list --all --json', ''),
  handler: run<ListArgs>(async (args, ctx) => {
    const http = ctx.registry();
    const health = await http.get('/health').catch((err) => {
      if (err instanceof ConnectionError) return undefined;
      throw err;
    });
    if (health?.status !== 200) {
      if (ctx.out.json) {
        ctx.out.printJson({
          registry: { status: 'not running', url: http.url },
          agents: [],
          timestamp: new Date().toISOString(),
        });
      } else {
        ctx.out.line('Registry: not running');
        ctx.out.line('No agents found');
      }
      throw new ConnectionError(
        `cannot reach the registry at ${http.url}`,
        'Set --registry-url (or MESH_REGISTRY_URL) to its address.',
      );
    }
    const every = await fetchAgents(http);
    const superseded = supersededIds(every);
    const healthy = every.filter(isLive);
    const unhealthy = every.filter((a) => !isLive(a) && !superseded.has(a.id));
    let shown = args.all ? every : healthy;
    if (args.filter) shown = shown.filter((a) => a.id.includes(args.filter as string));
    if (ctx.out.json) {
      ctx.out.printJson({
        registry: {
          status: 'running',
          url: http.url,
          agent_count: every.length,
          healthy_count: healthy.length,
          unhealthy_count: unhealthy.length,
        },
        agents: shown,
        timestamp: new Date().toISOString(),
      });
      return;
    }
    const counts = [
      `${healthy.length} healthy`,
      unhealthy.length ? `${unhealthy.length} unhealthy` : '',
      superseded.size ? `${superseded.size} superseded` : '',
    ].filter(Boolean);
    ctx.out.line(`Registry: running (${http.url}) - ${counts.join(', ')}`);
    ctx.out.line();
    if (shown.length === 0) {
      ctx.out.line('No agents found');
      return;
    }
    const headers = ['NAME', 'RUNTIME', 'TYPE', 'STATUS', 'DEPS', 'CAPS', 'ENDPOINT', 'AGE', 'LAST SEEN'];
    if (args.wide) headers.push('CAPABILITIES');
    ctx.out.line(
      table(
        headers,
        shown.map((a) => {
          const caps = userCaps(a);
          const row = [
            a.id,
            runtimeName(a.runtime),
            typeName(a.agent_type),
            // One word for one state: the header counts these as superseded, so the row says so
            // (the registry's own status for them is `unhealthy`; --json keeps it).
            superseded.has(a.id) ? 'superseded' : statusColour(String(a.status ?? 'unknown')),
            deps(a),
            `${caps.filter((c) => c.available !== false).length}/${caps.length}`,
            hostPort(a.endpoint),
            ageOf(a.created_at),
            ageOf(a.last_seen),
          ];
          if (args.wide) row.push(caps.map((c) => c.name).join(',') || '-');
          return superseded.has(a.id) ? row.map((c) => colors.dim(c)) : row;
        }),
      ),
    );
    ctx.out.line();
    const hidden = [
      !args.all && unhealthy.length ? `${unhealthy.length} down hidden (use --all)` : '',
      !args.all && superseded.size ? `${superseded.size} superseded hidden` : '',
    ].filter(Boolean);
    ctx.out.line(
      `${every.length} agents (${healthy.length} healthy)${hidden.map((h) => ` - ${h}`).join('')}`,
    );
  }),
};

// ─── status ──────────────────────────────────────────────────────────────────

/** meshctl 3.7.1's ResolveAgentByPrefix: exact name/id, then case-insensitive prefix; healthy first. */
function resolveAgent(agents: Agent[], query: string): Agent {
  const pick = (list: Agent[]) => {
    const live = list.filter(isLive);
    return live.length > 0 ? live : list;
  };
  const exact = pick(agents.filter((a) => a.id === query || a.name === query));
  if (exact.length === 1) return exact[0] as Agent;
  const q = query.toLowerCase();
  const prefix =
    exact.length > 1
      ? exact
      : pick(
          agents.filter(
            (a) => a.id.toLowerCase().startsWith(q) || (a.name ?? '').toLowerCase().startsWith(q),
          ),
        );
  if (prefix.length === 1) return prefix[0] as Agent;
  if (prefix.length === 0)
    throw new CliError(`no agent matches "${query}"`, 1, 'List them with: meshctl list --all');
  throw new CliError(
    `"${query}" is ambiguous: ${prefix.map((a) => a.id).join(', ')}`,
    1,
    'Give more of the id.',
  );
}

const stamp = (iso: string | undefined | null) => {
  if (!iso) return '-';
  const d = new Date(iso);
  return `${d.toISOString().replace('T', ' ').slice(0, 19)} (${formatAge(Date.now() - d.getTime())} ago)`;
};

function printAgent(ctx: Context, a: Agent): void {
  const line = (label: string, value: string) => ctx.out.line(`  ${label.padEnd(13)}: ${value}`);
  ctx.out.line(`Agent Details: ${a.id}`);
  line('Name', a.name ?? '-');
  line('Type', typeName(a.agent_type));
  line('Runtime', runtimeName(a.runtime));
  line('Status', statusColour(String(a.status ?? 'unknown')));
  line('Endpoint', a.endpoint ?? '-');
  if (a.version) line('Version', a.version);
  if (a.sdk_version) line('SDK', a.sdk_version);
  line('Dependencies', `${a.dependencies_resolved ?? 0}/${a.total_dependencies ?? 0}`);
  line('Last Seen', stamp(a.last_seen));
  line('Created', stamp(a.created_at));
  ctx.out.line();
  const caps = userCaps(a);
  ctx.out.line(`Capabilities (${caps.length}):`);
  if (caps.length) {
    ctx.out.line(
      table(
        ['CAPABILITY', 'MCP TOOL', 'VERSION', 'TAGS'],
        caps.map((c) => [c.name, c.function_name ?? '-', c.version ?? '-', (c.tags ?? []).join(',') || '-']),
      ),
    );
  }
  const resolutions = a.dependency_resolutions ?? [];
  ctx.out.line();
  ctx.out.line(`Dependencies (${resolutions.length}):`);
  if (resolutions.length) {
    ctx.out.line(
      table(
        ['DEPENDENCY', 'MCP TOOL', 'ENDPOINT'],
        resolutions.map((d) =>
          d.status === 'available'
            ? [d.capability, d.mcp_tool ?? '-', d.endpoint ?? '-']
            : [colors.red(d.capability), colors.red('NOT FOUND'), '-'],
        ),
      ),
    );
  }
}

const statusCommand: CommandModule<GlobalArgs, GlobalArgs & { agent?: string }> = {
  command: 'status [agent]',
  describe: 'Show agent details: one agent (id or name, or a prefix of either), else every healthy agent',
  builder: (y) =>
    y
      .positional('agent', { type: 'string', describe: 'agent id or name, or a prefix' })
      .example('$0 status', 'every healthy agent')
      .example('$0 status report-svc', 'one agent by name or id prefix'),
  handler: run<GlobalArgs & { agent?: string }>(async (args, ctx) => {
    const agents = await fetchAgents(ctx.registry());
    if (args.agent) {
      const a = resolveAgent(agents, args.agent);
      if (ctx.out.json) ctx.out.printJson(a);
      else printAgent(ctx, a);
      return;
    }
    const healthy = agents.filter((a) => a.status === 'healthy');
    if (ctx.out.json) {
      ctx.out.printJson(healthy);
      return;
    }
    ctx.out.line(`Found ${healthy.length} healthy agent(s):`);
    for (const a of healthy) {
      ctx.out.line();
      printAgent(ctx, a);
    }
  }),
};

/** `list` and `status` (agents), top-level as in meshctl 3.7.1. */
export const agentCommands = [listCommand, statusCommand];

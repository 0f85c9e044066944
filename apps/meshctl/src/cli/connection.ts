import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { UsageError } from './errors.ts';

/** The flags every command accepts (MCP Mesh meshctl 3.7.1's names, plus ours). */
export interface GlobalArgs {
  'registry-url'?: string;
  'registry-host'?: string;
  'registry-port'?: number;
  'registry-scheme'?: string;
  'admin-url'?: string;
  'admin-token'?: string;
  'admin-token-file'?: string;
  token?: string;
  'token-file'?: string;
  'trust-fleet-urls'?: boolean;
  insecure?: boolean;
  timeout?: number;
  json?: boolean;
}

/** Adds the connection flags and `--json` as global options. */
export function globalOptions<T>(y: Argv<T>): Argv<T & GlobalArgs> {
  return y
    .option('registry-url', {
      type: 'string',
      describe: 'Registry URL; wins over host/port [env: MESH_REGISTRY_URL]',
      group: 'Connection:',
    })
    .option('registry-host', {
      type: 'string',
      describe: 'Registry host (default localhost) [env: MCP_MESH_REGISTRY_HOST]',
      group: 'Connection:',
    })
    .option('registry-port', {
      type: 'number',
      describe: 'Registry port (default 8000) [env: MCP_MESH_REGISTRY_PORT]',
      group: 'Connection:',
    })
    .option('registry-scheme', {
      type: 'string',
      choices: ['http', 'https'],
      describe: 'Scheme for host/port; when unset, https is tried first, then http (as meshctl 3.7.1)',
      group: 'Connection:',
    })
    .option('admin-url', {
      type: 'string',
      describe:
        'Admin listener URL, when the registry serves /admin on its own port (default: the registry URL with the admin port its /health names, else the registry URL) [env: MESH_ADMIN_URL]',
      group: 'Connection:',
    })
    .option('admin-token', {
      type: 'string',
      describe:
        'Bearer token for admin routes, force reclaim and job listing; visible in ps, prefer --admin-token-file [env: MESH_ADMIN_TOKEN]',
      group: 'Connection:',
    })
    .option('admin-token-file', {
      type: 'string',
      describe:
        'File holding the admin token (its first line that is not blank or a # comment) [env: MESH_ADMIN_TOKEN_FILE]',
      group: 'Connection:',
    })
    .option('token', {
      type: 'string',
      describe:
        'Bearer token for the main port, for a registry started with --client-token/--agent-token; visible in ps, prefer --token-file [env: MESH_TOKEN]',
      group: 'Connection:',
    })
    .option('token-file', {
      type: 'string',
      describe:
        'File holding the main-port token (first line that is not blank or a # comment) [env: MESH_TOKEN_FILE]',
      group: 'Connection:',
    })
    .option('trust-fleet-urls', {
      type: 'boolean',
      describe:
        'Also send tokens to replica URLs read from the fleet table (doctor, fleet drain/status); by default they go only to the URLs given by flags or environment [env: MESH_TRUST_FLEET_URLS=1]',
      group: 'Connection:',
    })
    .option('insecure', {
      type: 'boolean',
      describe: 'Skip TLS certificate verification',
      group: 'Connection:',
    })
    .option('timeout', {
      type: 'number',
      describe: 'HTTP timeout per request, seconds',
      default: 30,
      group: 'Connection:',
    })
    .option('json', {
      type: 'boolean',
      describe: 'Print machine-readable JSON on stdout',
    }) as Argv<T & GlobalArgs>;
}

export interface Target {
  /** The registry's main URL, no trailing slash. */
  url: string;
  /** Where `/admin/*` and force reclaim go. */
  adminUrl: string;
  /**
   * Whether the operator gave the admin URL (`--admin-url`, `MESH_ADMIN_URL`).
   * When not, the registry's `/health` may name its admin port, and meshctl uses
   * the registry URL with that port (RegistryHttp).
   */
  adminExplicit: boolean;
  /** True when the scheme is still to be probed (host/port given without a scheme). */
  probeScheme: boolean;
  adminToken: string | undefined;
  /** The main port's bearer token (agent or client role). */
  token: string | undefined;
  /**
   * Send tokens to replica URLs read from the fleet table too. Off by default:
   * whoever can write that table (or register a replica) must not collect the tokens.
   */
  trustFleetUrls: boolean;
  insecure: boolean;
  timeoutMs: number;
}

function parseUrl(raw: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`${what} is not a URL: ${raw}`, 'Example: --registry-url http://127.0.0.1:8000');
  }
  if (!['http:', 'https:'].includes(url.protocol) || !url.hostname) {
    throw new UsageError(`${what} must be an http(s) URL with a host, got ${raw}`);
  }
  return url;
}

const trim = (u: URL) => u.toString().replace(/\/+$/, '');

/**
 * A token from its flag, its file flag, `<ENV>` or `<ENV>_FILE`, in that
 * order. A file holds the token on its first line that is neither blank nor a
 * `#` comment (the registry's token files hold one per line; any one works).
 */
function secret(
  flag: string | undefined,
  fileFlag: string | undefined,
  env: NodeJS.ProcessEnv,
  name: string,
  fileFlagName: string,
): string | undefined {
  if (flag?.trim()) return flag.trim();
  const file = fileFlag?.trim() || env[`${name}_FILE`]?.trim();
  if (!file) return env[name]?.trim() || undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `${fileFlag ? fileFlagName : `${name}_FILE`}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l && !l.startsWith('#'));
  if (!line) throw new UsageError(`${fileFlag ? fileFlagName : `${name}_FILE`}: ${file} holds no token`);
  return line;
}

/**
 * Works out where to connect, as meshctl 3.7.1 does: `--registry-url` wins,
 * then `--registry-host`/`--registry-port`, then (ours) `MESH_REGISTRY_URL`,
 * then `MCP_MESH_REGISTRY_HOST` / `MCP_MESH_REGISTRY_PORT` (default localhost:8000).
 */
export function resolveTarget(args: GlobalArgs, env: NodeJS.ProcessEnv = process.env): Target {
  const timeout = args.timeout ?? 30;
  if (!Number.isFinite(timeout) || timeout <= 0)
    throw new UsageError(`--timeout must be a positive number of seconds, got ${args.timeout}`);
  // Flags beat the environment: --registry-host/--registry-port beat MESH_REGISTRY_URL.
  const hostPortFlags = args['registry-host'] !== undefined || args['registry-port'] !== undefined;
  const explicit = args['registry-url'] || (hostPortFlags ? undefined : env.MESH_REGISTRY_URL) || undefined;
  let url: string;
  let probeScheme = false;
  if (explicit) {
    url = trim(parseUrl(explicit, args['registry-url'] ? '--registry-url' : 'MESH_REGISTRY_URL'));
  } else {
    const host = args['registry-host'] || env.MCP_MESH_REGISTRY_HOST || 'localhost';
    const portRaw =
      args['registry-port'] ?? (env.MCP_MESH_REGISTRY_PORT ? Number(env.MCP_MESH_REGISTRY_PORT) : 8000);
    if (!Number.isInteger(portRaw) || portRaw < 1 || portRaw > 65535) {
      throw new UsageError(`registry port must be an integer in [1, 65535], got ${portRaw}`);
    }
    const scheme = args['registry-scheme'];
    probeScheme = !scheme;
    url = `${scheme ?? 'http'}://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${portRaw}`;
    parseUrl(url, 'registry host/port');
  }
  const adminRaw = args['admin-url'] || env.MESH_ADMIN_URL || undefined;
  return {
    url,
    adminUrl: adminRaw ? trim(parseUrl(adminRaw, args['admin-url'] ? '--admin-url' : 'MESH_ADMIN_URL')) : url,
    adminExplicit: Boolean(adminRaw),
    probeScheme,
    adminToken: secret(
      args['admin-token'],
      args['admin-token-file'],
      env,
      'MESH_ADMIN_TOKEN',
      '--admin-token-file',
    ),
    token: secret(args.token, args['token-file'], env, 'MESH_TOKEN', '--token-file'),
    trustFleetUrls:
      Boolean(args['trust-fleet-urls']) || /^(1|true|yes)$/i.test(env.MESH_TRUST_FLEET_URLS ?? ''),
    insecure: Boolean(args.insecure),
    timeoutMs: Math.round(timeout * 1000),
  };
}

/**
 * The connection flags the operator gave, to append to the commands we print
 * so that they run as they are (the admin token is never printed: it stays in
 * MESH_ADMIN_TOKEN or has to be added by hand).
 */
export function connectionFlags(args: GlobalArgs): string {
  const flags: string[] = [];
  if (args['registry-url']) flags.push(`--registry-url ${args['registry-url']}`);
  else {
    if (args['registry-host']) flags.push(`--registry-host ${args['registry-host']}`);
    if (args['registry-port'] !== undefined) flags.push(`--registry-port ${args['registry-port']}`);
    if (args['registry-scheme']) flags.push(`--registry-scheme ${args['registry-scheme']}`);
  }
  if (args['admin-url']) flags.push(`--admin-url ${args['admin-url']}`);
  // File paths are not secrets: printed so that the command runs as it is.
  if (args['admin-token-file']) flags.push(`--admin-token-file ${args['admin-token-file']}`);
  if (args['token-file']) flags.push(`--token-file ${args['token-file']}`);
  if (args['trust-fleet-urls']) flags.push('--trust-fleet-urls');
  if (args.insecure) flags.push('--insecure');
  return flags.length ? ` ${flags.join(' ')}` : '';
}

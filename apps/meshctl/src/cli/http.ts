import { Agent, fetch } from 'undici';
import type { Target } from './connection.ts';
import { ConnectionError, DatabaseUnavailableError } from './errors.ts';

export interface HttpResponse {
  status: number;
  /** The raw body (printed as is by `--json`, as meshctl 3.7.1 does). */
  text: string;
  url: string;
  /** A token was configured but not sent: the URL came from the fleet table (see `trusts`). */
  tokenWithheld?: boolean;
  json<T = unknown>(): T;
}

export interface RequestOptions {
  /** Send to the admin URL instead of the main one. */
  admin?: boolean;
  /** An absolute base URL (a replica discovered from the fleet list). */
  base?: string;
  body?: unknown;
  query?: Record<string, string | number | undefined>;
  /** Per-request timeout override, ms. */
  timeoutMs?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

const userAgent = 'meshctl-ts';

/**
 * "Registry up, database down": the registry's 503 with code `unavailable`
 * naming the database. The same message and exit code (3) for every command.
 */
function databaseDown(method: string, url: URL, text: string): void {
  let body: { code?: unknown; error?: unknown } = {};
  try {
    body = JSON.parse(text);
  } catch {
    return;
  }
  if (body.code !== 'unavailable' || !/database/i.test(String(body.error))) return;
  throw new DatabaseUnavailableError(
    `the registry at ${url.origin} is up but its database is unavailable (${method} ${url.pathname}: ${String(body.error)})`,
    'Commands that need the database fail until it is back; `meshctl registry status`, drain and resume of one replica still answer (counts marked stale).',
  );
}

/**
 * The HTTP side of meshctl. Network failures and timeouts become a
 * {@link ConnectionError} (exit 2) naming the URL; any HTTP status is returned
 * for the command to judge.
 */
export class RegistryHttp {
  private readonly dispatcher: Agent;
  private schemeProbed: Promise<void> | undefined;
  private adminDiscovered: Promise<void> | undefined;
  url: string;
  adminUrl: string;

  constructor(readonly target: Target) {
    this.url = target.url;
    this.adminUrl = target.adminUrl;
    this.dispatcher = new Agent({ connect: { rejectUnauthorized: !target.insecure } });
  }

  /**
   * meshctl 3.7.1's scheme probe: with host/port and no `--registry-scheme`,
   * try `https://…/health` (certificate not checked); use https if it answers
   * 200, http otherwise.
   */
  private probe(): Promise<void> {
    if (!this.target.probeScheme) return Promise.resolve();
    this.schemeProbed ??= (async () => {
      const https = this.url.replace(/^http:/, 'https:');
      const insecure = new Agent({ connect: { rejectUnauthorized: false } });
      try {
        const res = await fetch(`${https}/health`, {
          dispatcher: insecure,
          signal: AbortSignal.timeout(2000),
        });
        await res.arrayBuffer();
        if (res.status === 200) {
          if (this.adminUrl === this.url) this.adminUrl = https;
          this.url = https;
        }
      } catch {
        // plain http it is
      } finally {
        await insecure.close().catch(() => {});
      }
    })();
    return this.schemeProbed;
  }

  /**
   * The token a request carries: the admin token on operator routes (admin,
   * force reclaim, the job list), else the main-port token, else the admin
   * token (a mesh-registry accepts its admin tokens on every route).
   */
  private tokenFor(method: string, path: string, options: RequestOptions): string | undefined {
    const { adminToken, token } = this.target;
    const operator =
      options.admin ||
      path.startsWith('/admin/') ||
      /^\/jobs\/[^/]+\/reclaim$/.test(path) ||
      (method === 'GET' && path === '/jobs');
    return operator ? (adminToken ?? token) : (token ?? adminToken);
  }

  /**
   * Tokens go only to the origins the operator gave (flags, environment), not
   * to replica URLs read from the fleet table (doctor, fleet drain), unless
   * `--trust-fleet-urls`: a row anyone with database access can write must
   * not collect the operator's tokens (issue 18).
   */
  trusts(url: URL): boolean {
    if (this.target.trustFleetUrls) return true;
    const given = [this.target.url, this.target.adminUrl, this.url, this.adminUrl];
    return given.some((g) => new URL(g).origin === url.origin);
  }

  /**
   * Without `--admin-url`: a registry with an admin listener says its port in
   * `/health` (`admin_port`); its admin routes are then at the registry URL's
   * host on that port. Asked once, before the first admin request; a registry
   * that says nothing (no admin port, hidden, MCP Mesh) keeps them on its URL.
   */
  private discoverAdmin(): Promise<void> {
    if (this.target.adminExplicit) return Promise.resolve();
    this.adminDiscovered ??= (async () => {
      const res = await this.request('GET', '/health').catch(() => undefined);
      if (res?.status !== 200) return;
      let port: unknown;
      try {
        port = (JSON.parse(res.text) as { admin_port?: unknown }).admin_port;
      } catch {
        return;
      }
      if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return;
      const admin = new URL(this.url);
      admin.port = String(port);
      this.adminUrl = admin.toString().replace(/\/+$/, '');
    })();
    return this.adminDiscovered;
  }

  async request(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    await this.probe();
    if (options.admin && options.base === undefined) await this.discoverAdmin();
    const base = options.base ?? (options.admin ? this.adminUrl : this.url);
    const url = new URL(base.replace(/\/+$/, '') + path);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { 'user-agent': userAgent, accept: 'application/json' };
    const token = this.tokenFor(method, path, options);
    if (token && this.trusts(url)) headers.authorization = `Bearer ${token}`;
    Object.assign(headers, options.headers);
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    } else if (method === 'POST') {
      headers['content-type'] = 'application/json';
    }
    const timeoutMs = options.timeoutMs ?? this.target.timeoutMs;
    try {
      const res = await fetch(url, {
        method,
        headers,
        body,
        dispatcher: this.dispatcher,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      if (res.status === 503 && !/^\/(ready|health)$/.test(path)) databaseDown(method, url, text);
      return {
        status: res.status,
        text,
        url: url.toString(),
        tokenWithheld: Boolean(token) && !this.trusts(url),
        json<T>() {
          try {
            return JSON.parse(text) as T;
          } catch {
            throw new ConnectionError(
              `${method} ${url} answered ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`,
            );
          }
        },
      };
    } catch (err) {
      if (err instanceof ConnectionError || err instanceof DatabaseUnavailableError) throw err;
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const reason =
        e.name === 'TimeoutError'
          ? `no answer within ${timeoutMs / 1000}s`
          : (e.cause?.code ?? e.cause?.message ?? e.message);
      throw new ConnectionError(
        `cannot reach the registry at ${url.origin} (${method} ${url.pathname}): ${reason}`,
        'Is it running? Set --registry-url (or MESH_REGISTRY_URL) to its address.',
      );
    }
  }

  get(path: string, options?: RequestOptions) {
    return this.request('GET', path, options);
  }
  post(path: string, options?: RequestOptions) {
    return this.request('POST', path, options);
  }
  delete(path: string, options?: RequestOptions) {
    return this.request('DELETE', path, options);
  }

  async close(): Promise<void> {
    await this.dispatcher.close().catch(() => {});
  }
}

import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { limits } from '@mesh/protocol';
import type { Logger } from '../logger.ts';
import type { ForwardPolicy } from '../registry-config.ts';

export interface CancelForwardSettings {
  policy: ForwardPolicy;
  /** Per forward, connect and answer together. */
  timeoutMs: number;
  /** Resolves a host name; injectable so tests can play DNS. */
  lookup?: (host: string) => Promise<{ address: string; family: number }[]>;
  /** URLs of every replica's listeners (the fleet table), refused as targets too. */
  fleet?: () => Promise<string[]>;
}

/** The registry's own listeners, known once they are bound. */
export interface OwnListeners {
  /** The address both listeners bind (`--host`). */
  host: string;
  ports: number[];
}

const label = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/**
 * Whether `value` is a host an agent may register as `http_host`: a DNS name
 * or an IP literal (IPv6 bare or in brackets). Nothing else: no scheme, path,
 * port, userinfo, query, fragment, whitespace or percent-encoding, so that
 * `http://{host}:{port}/…` can only ever name that host (issue 18).
 */
export function isHostOnly(value: string): boolean {
  if (value.length === 0 || value.length > limits.maxHostLength) return false;
  const bare = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value;
  if (bare !== value) return isIPv6(bare);
  if (isIP(value) !== 0) return true;
  const name = value.endsWith('.') ? value.slice(0, -1) : value;
  // An all-numeric name would be read as an IPv4 address in another notation (0x7f.1, 2130706433).
  if (/^[0-9.]+$/.test(name) || /^0x/i.test(name)) return false;
  return name.split('.').every((l) => label.test(l));
}

/**
 * An address in one spelling: brackets dropped, IPv6 in its canonical form,
 * and an IPv4-mapped IPv6 address as the IPv4 address it maps, however
 * written (`::ffff:127.0.0.1`, `::ffff:7f00:1`, `0:0:0:0:0:ffff:0:0`: issue 30
 * finding 10, the hex forms reached the registry's own listeners).
 */
const normalise = (raw: string): string => {
  const ip = raw.replace(/^\[|\]$/g, '').toLowerCase();
  if (!isIPv6(ip)) return ip;
  const canonical = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!mapped) return canonical;
  const [hi, lo] = [Number.parseInt(mapped[1] as string, 16), Number.parseInt(mapped[2] as string, 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
};

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** 0.0.0.0 and :: connect to this host on Linux: never a target. */
const unspecified = new Set(['0.0.0.0', '::']);

const family = (ip: string): 'ipv4' | 'ipv6' => (isIPv4(ip) ? 'ipv4' : 'ipv6');

/** Parses `10.0.0.0/8,fd00::/8` into a BlockList; throws with the bad entry. */
export function cidrList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [ip, bits, extra] = c.split('/');
    const prefix = Number(bits);
    const fam = ip && isIP(ip) ? family(ip) : undefined;
    if (
      !fam ||
      extra !== undefined ||
      bits === undefined ||
      !/^\d+$/.test(bits) ||
      prefix > (fam === 'ipv4' ? 32 : 128)
    ) {
      throw new Error(`not a CIDR: "${c}"`);
    }
    list.addSubnet(ip as string, prefix, fam);
  }
  return list;
}

/**
 * Tells an owner agent that its job was cancelled (reference §2.10: POST
 * `{agent}/jobs/{id}/cancel`, best effort). The main port has no
 * authentication (3.7), so anyone can make the registry send this request;
 * the target is therefore only ever an agent's host and port: the host is
 * re-validated, resolved once and the connection pinned to the checked
 * address (no DNS rebinding between check and connect), the registry's own
 * listeners and unspecified addresses are refused, the operator's CIDR list
 * applies, redirects are not followed and the whole exchange is time-boxed.
 */
export class CancelForwarder {
  private own: OwnListeners | undefined;
  private readonly allowed: BlockList | undefined;

  constructor(
    private readonly settings: CancelForwardSettings,
    private readonly logger: Logger,
  ) {
    this.allowed = settings.policy.kind === 'cidrs' ? cidrList(settings.policy.cidrs) : undefined;
  }

  /** Called once the listeners are bound. */
  setOwnListeners(own: OwnListeners): void {
    this.own = own;
  }

  get enabled(): boolean {
    return this.settings.policy.kind !== 'off';
  }

  /**
   * The URL to POST to, or why there is none. The URL names the checked IP
   * address, never the registered name.
   */
  async target(host: string, port: number, jobId: string): Promise<{ url: URL } | { refused: string }> {
    if (!this.enabled) return { refused: 'cancel forwarding is off' };
    if (!isHostOnly(host)) return { refused: 'http_host is not a host' };
    if (!Number.isInteger(port) || port < 1 || port > 65535) return { refused: 'http_port out of range' };
    const bare = host.startsWith('[') ? host.slice(1, -1) : host;
    let address: string;
    if (isIP(bare)) address = bare;
    else {
      const found = await (this.settings.lookup ?? defaultLookup)(bare).catch(() => []);
      // Every address the name has must pass, or a round-robin name could slip one in.
      if (found.length === 0) return { refused: 'http_host does not resolve' };
      for (const a of found) {
        const why = this.refusal(normalise(a.address), port);
        if (why) return { refused: why };
      }
      address = (found[0] as { address: string }).address;
    }
    const ip = normalise(address);
    const why = this.refusal(ip, port);
    if (why) return { refused: why };
    if (await this.isFleetListener(ip, port)) return { refused: "a registry replica's listener" };
    const url = new URL('http://placeholder/');
    url.hostname = isIPv6(ip) ? `[${ip}]` : ip;
    url.port = String(port);
    url.pathname = `/jobs/${encodeURIComponent(jobId)}/cancel`;
    return { url };
  }

  private refusal(ip: string, port: number): string | undefined {
    if (!isIP(ip)) return 'not an IP address';
    if (unspecified.has(ip)) return 'unspecified address';
    if (this.allowed && !this.allowed.check(ip, family(ip))) return 'outside the allowed CIDRs';
    if (this.own?.ports.includes(port) && this.isLocal(ip)) return "the registry's own listener";
    return undefined;
  }

  /** Whether ip:port is a listener some replica recorded in the fleet table. */
  private async isFleetListener(ip: string, port: number): Promise<boolean> {
    const urls = (await this.settings.fleet?.().catch(() => [])) ?? [];
    for (const raw of urls) {
      let u: URL;
      try {
        u = new URL(raw);
      } catch {
        continue;
      }
      if (Number(u.port || 80) !== port) continue;
      const h = u.hostname.replace(/^\[|\]$/g, '');
      const addrs = isIP(h)
        ? [h]
        : (await (this.settings.lookup ?? defaultLookup)(h).catch(() => [])).map((a) => a.address);
      if (addrs.some((a) => normalise(a) === ip)) return true;
    }
    return false;
  }

  /** Whether `ip` reaches this host: loopback, the bound address, or any local interface. */
  private isLocal(ip: string): boolean {
    if (loopback.check(ip, family(ip))) return true;
    if (this.own && normalise(this.own.host) === ip) return true;
    for (const list of Object.values(networkInterfaces())) {
      for (const nic of list ?? []) if (normalise(nic.address) === ip) return true;
    }
    return false;
  }

  /** POSTs the cancel; failures and refusals are logged, never thrown. */
  async forward(
    endpoint: { host: string; port: number },
    jobId: string,
    reason: string,
    traceId: string | undefined,
  ): Promise<'sent' | 'refused' | 'failed'> {
    try {
      const t = await this.target(endpoint.host, endpoint.port, jobId);
      if ('refused' in t) {
        this.logger.warn(
          { job_id: jobId, http_host: endpoint.host.slice(0, 300), http_port: endpoint.port, why: t.refused },
          'cancel forward refused',
        );
        return 'refused';
      }
      const res = await fetch(t.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(traceId ? { 'x-trace-id': traceId } : {}) },
        body: reason ? JSON.stringify({ reason }) : undefined,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.settings.timeoutMs),
      });
      await res.body?.cancel();
      this.logger.debug({ job_id: jobId, status: res.status }, 'cancel forwarded');
      return 'sent';
    } catch (err) {
      this.logger.debug({ err, job_id: jobId }, 'cancel forward failed (ignored)');
      return 'failed';
    }
  }
}

const defaultLookup = (host: string) => dnsLookup(host, { all: true, verbatim: true });

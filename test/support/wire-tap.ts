import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request that went through a tap, and the answer it got. */
export interface TappedCall {
  /** `Date.now()` when the request arrived. */
  at: number;
  method: string;
  /** The path without its query string. */
  path: string;
  query: URLSearchParams;
  /** Lower-case names of the request headers. */
  headerNames: string[];
  // biome-ignore lint/suspicious/noExplicitAny: raw wire bodies
  body: any;
  /** 0 when the tap was partitioned and dropped the connection; minus the registry's status when `loseAnswers` dropped its answer. */
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: raw wire bodies
  response: any;
}

/**
 * A recording HTTP proxy in front of a registry, on 127.0.0.1: clients talk
 * to `url`, every call and its answer is kept in `calls`, and `partition()`
 * makes it drop every connection (a network partition of the clients behind
 * it) until `heal()`.
 *
 * @example
 * const tap = await startWireTap(registry.url);
 * const client = new RegistryClient({ urls: [tap.url] });
 * tap.partition(); … tap.heal();
 * tap.calls.filter((c) => c.path === '/jobs/leases');
 * tap.loseAnswers(1); // the next call reaches the registry, its answer never comes back
 */
export interface WireTap {
  url: string;
  calls: TappedCall[];
  partition(): void;
  heal(): void;
  /**
   * The next `count` calls are forwarded and answered by the registry, then
   * the client's connection is dropped: the request took effect, the client
   * never learns it (a timeout or a load balancer cut after the commit).
   */
  loseAnswers(count: number): void;
  close(): Promise<void>;
}

const hopByHop = new Set([
  'host',
  'connection',
  'keep-alive',
  'content-length',
  'transfer-encoding',
  'content-encoding',
]);

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
    });
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });

const parse = (text: string): unknown => {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
};

export async function startWireTap(target: string): Promise<WireTap> {
  const calls: TappedCall[] = [];
  let partitioned = false;
  let answersToLose = 0;
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://tap');
    const call: TappedCall = {
      at: Date.now(),
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headerNames: Object.keys(req.headers),
      body: undefined,
      status: 0,
      response: undefined,
    };
    calls.push(call);
    try {
      const text = await readBody(req);
      call.body = parse(text);
      if (partitioned) {
        req.socket.destroy();
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (!hopByHop.has(k) && typeof v === 'string') headers[k] = v;
      }
      const upstream = await fetch(`${target}${req.url}`, {
        method: call.method,
        headers,
        body: text && call.method !== 'GET' && call.method !== 'HEAD' ? text : undefined,
      });
      const answer = await upstream.text();
      const lose = answersToLose > 0;
      if (lose) answersToLose -= 1;
      // A partition that began while the registry answered drops the answer too.
      if (partitioned || lose) {
        call.status = lose ? -upstream.status : 0;
        req.socket.destroy();
        return;
      }
      call.status = upstream.status;
      call.response = parse(answer);
      const out: Record<string, string> = {};
      upstream.headers.forEach((v, k) => {
        if (!hopByHop.has(k)) out[k] = v;
      });
      res.writeHead(upstream.status, out);
      res.end(answer);
    } catch {
      req.socket.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    partition: () => {
      partitioned = true;
      server.closeIdleConnections();
    },
    heal: () => {
      partitioned = false;
    },
    loseAnswers: (count) => {
      answersToLose = count;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

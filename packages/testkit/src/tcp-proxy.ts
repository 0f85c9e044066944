import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * How a cut looks to the client: `blackhole` is a network partition (every
 * connection stays open, nothing arrives: queries hang), `refuse` a database
 * that went away (connections reset, new ones closed at once).
 */
export type CutMode = 'blackhole' | 'refuse';

/** Which way a delay applies: client → server (`up`), server → client (`down`), or both. */
export type Direction = 'up' | 'down' | 'both';

export interface TcpProxy {
  /** Where clients connect: `127.0.0.1:<port>`. */
  port: number;
  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string;
  cut(mode: CutMode): void;
  /** Forwards again; connections held during a blackhole are closed so clients reconnect. */
  restore(): void;
  /**
   * Delays every chunk by `ms` in `direction` (default `down`: one delay per
   * round trip, e.g. 200 ms per query); 0 removes the delay. Order is kept.
   */
  latency(ms: number, direction?: Direction): void;
  /**
   * Resets every open connection now (mid-query, both ends), as a database
   * crash or a stateful firewall forgetting them does; new connections go
   * through as before.
   */
  drop(): number;
  /** New connections go to `port` (a database restarted on another port); open ones stay. */
  retarget(port: number): void;
  /** Connections open through the proxy now. */
  readonly connections: number;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket | undefined;
}

/**
 * A TCP proxy on 127.0.0.1 that a test can cut, slow down or reset, to make
 * the database misbehave for one process without touching the shared
 * PostgreSQL server (issue 16: latency, connections dropped mid-query, a
 * partition, heal).
 *
 * @example
 * const proxy = await startTcpProxy(5432);
 * const r = await spawnRegistry({ databaseUrl: proxy.via(db.url) });
 * proxy.latency(200);           // a slow database
 * proxy.cut('blackhole'); … proxy.restore();   // a partition, healed
 * proxy.drop();                 // every connection reset mid-query
 */
export async function startTcpProxy(initialPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let targetPort = initialPort;
  let mode: CutMode | undefined;
  const delay = { up: 0, down: 0 };
  const pairs = new Set<Pair>();

  /**
   * Forwards `from` → `to`, each chunk after the direction's delay. Chunks wait
   * in a FIFO with their due time, so a change of latency never reorders them.
   */
  const forward = (from: Socket, to: Socket, dir: 'up' | 'down') => {
    const queue: { due: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const pump = () => {
      timer = undefined;
      if (mode === 'blackhole') return; // held: nothing flows in a partition
      const now = Date.now();
      while (queue.length > 0 && (queue[0] as { due: number }).due <= now) {
        const { chunk } = queue.shift() as { chunk: Buffer };
        if (!to.destroyed) to.write(chunk);
      }
      if (queue.length > 0) timer = setTimeout(pump, (queue[0] as { due: number }).due - now);
    };
    from.on('data', (chunk: Buffer) => {
      queue.push({ due: Date.now() + delay[dir], chunk });
      if (!timer) pump();
    });
    from.once('close', () => clearTimeout(timer));
  };

  const server: Server = createServer((client) => {
    client.on('error', () => {});
    if (mode === 'refuse') {
      client.destroy();
      return;
    }
    const pair: Pair = { client, upstream: undefined };
    pairs.add(pair);
    client.once('close', () => {
      pair.upstream?.destroy();
      pairs.delete(pair);
    });
    if (mode === 'blackhole') {
      client.pause(); // held open, never forwarded
      return;
    }
    const upstream = createConnection({ host: targetHost, port: targetPort });
    upstream.on('error', () => {});
    pair.upstream = upstream;
    upstream.once('close', () => client.destroy());
    forward(client, upstream, 'up');
    forward(upstream, client, 'down');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const destroyAll = () => {
    let n = 0;
    for (const { client, upstream } of pairs) {
      client.destroy();
      upstream?.destroy();
      n += 1;
    }
    return n;
  };
  return {
    port,
    via(url) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    cut(next) {
      mode = next;
      if (next === 'refuse') {
        destroyAll();
        return;
      }
      // A partition: nothing flows either way, both ends stay open.
      for (const { client, upstream } of pairs) {
        client.pause();
        upstream?.pause();
      }
    },
    restore() {
      mode = undefined;
      destroyAll();
    },
    latency(ms, direction = 'down') {
      delay.up = direction === 'down' ? 0 : ms;
      delay.down = direction === 'up' ? 0 : ms;
    },
    drop: destroyAll,
    retarget(next) {
      targetPort = next;
    },
    get connections() {
      return pairs.size;
    },
    async close() {
      destroyAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

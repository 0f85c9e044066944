import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * How a cut looks to the client: `blackhole` is a network partition (every
 * connection stays open, nothing arrives: queries hang), `refuse` a database
 * that went away (connections reset, new ones closed at once).
 */
export type CutMode = 'blackhole' | 'refuse';

export interface TcpProxy {
  /** Where clients connect: `127.0.0.1:<port>`. */
  port: number;
  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string;
  cut(mode: CutMode): void;
  /** Forwards again; connections held during a blackhole are closed so clients reconnect. */
  restore(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 that a test can cut, to make the database
 * unreachable for one process without touching the shared PostgreSQL server.
 *
 * @example
 * const proxy = await startTcpProxy(5432);
 * const r = await spawnRegistry({ databaseUrl: proxy.via(db.url) });
 * proxy.cut('blackhole'); … proxy.restore();
 */
export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let mode: CutMode | undefined;
  const pairs = new Set<[Socket, Socket | undefined]>();
  const server: Server = createServer((client) => {
    client.on('error', () => {});
    if (mode === 'refuse') {
      client.destroy();
      return;
    }
    const pair: [Socket, Socket | undefined] = [client, undefined];
    pairs.add(pair);
    client.once('close', () => {
      pair[1]?.destroy();
      pairs.delete(pair);
    });
    if (mode === 'blackhole') {
      client.pause(); // held open, never forwarded
      return;
    }
    const upstream = createConnection({ host: targetHost, port: targetPort });
    upstream.on('error', () => {});
    pair[1] = upstream;
    upstream.once('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
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
      for (const pair of pairs) {
        const [client, upstream] = pair;
        if (next === 'refuse') {
          client.destroy();
          upstream?.destroy();
          continue;
        }
        // A partition: nothing flows either way, both ends stay open.
        client.unpipe();
        upstream?.unpipe();
        client.pause();
        upstream?.pause();
      }
    },
    restore() {
      mode = undefined;
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream?.destroy();
      }
    },
    async close() {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream?.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

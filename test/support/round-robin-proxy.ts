import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A load balancer as a platform puts in front of registry replicas (a
 * Kubernetes Service, a cloud LB): each request goes to the next upstream in
 * turn; an upstream that refuses the connection (a replica being replaced) is
 * skipped for that request. Buffers the request body so it can be resent.
 */
export async function startRoundRobinProxy(
  upstreams: string[],
): Promise<{ url: string; close(): Promise<void> }> {
  let next = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const tryUpstream = (left: number) => {
        const base = new URL(upstreams[next++ % upstreams.length] as string);
        const out = request(
          {
            host: base.hostname,
            port: base.port,
            method: req.method,
            path: req.url,
            headers: { ...req.headers, host: base.host, 'content-length': String(body.length) },
          },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        out.on('error', () => {
          if (left > 1) tryUpstream(left - 1);
          else if (!res.headersSent) res.writeHead(502).end();
        });
        out.end(body);
      };
      tryUpstream(upstreams.length);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

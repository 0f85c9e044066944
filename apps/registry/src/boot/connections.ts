/**
 * The listeners' plumbing: listen on a port, count the requests and
 * connections of a server, and close it gracefully at shutdown.
 */
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from '../logger.ts';

export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * The requests a server is answering and its open connections with none in
 * progress. Node's closeIdleConnections() leaves a connection that never sent
 * a request open (it counts as awaiting headers), which held shutdown for the
 * whole timeout (issue 20); these are closed at shutdown too.
 */
export interface Connections {
  readonly inFlight: number;
  readonly open: number;
  /** Destroys every connection with no request in progress; returns how many. */
  closeIdle(): number;
}

export function trackConnections(server: Server): Connections {
  let inFlight = 0;
  const active = new Map<Socket, number>();
  server.on('connection', (socket: Socket) => {
    active.set(socket, 0);
    socket.once('close', () => active.delete(socket));
  });
  server.on('request', (req, res) => {
    inFlight += 1;
    const socket = req.socket;
    active.set(socket, (active.get(socket) ?? 0) + 1);
    res.once('close', () => {
      inFlight -= 1;
      if (active.has(socket)) active.set(socket, Math.max(0, (active.get(socket) ?? 1) - 1));
    });
  });
  return {
    get inFlight() {
      return inFlight;
    },
    get open() {
      return active.size;
    },
    closeIdle() {
      server.closeIdleConnections();
      let closed = 0;
      for (const [socket, n] of active) {
        if (n === 0) {
          socket.destroy();
          closed += 1;
        }
      }
      return closed;
    },
  };
}

/**
 * Stops accepting, closes idle keep-alive connections at once and again as
 * requests finish (a keep-alive client would otherwise hold the server open
 * until the timeout), says every second what it still waits for, and cuts
 * what is left at the timeout.
 */
export function close(
  server: Server,
  conns: Connections,
  timeoutMs: number,
  logger: Logger,
  name: string,
): Promise<void> {
  return new Promise((resolve) => {
    const started = Date.now();
    const timer = setTimeout(() => {
      logger.warn(
        {
          listener: name,
          in_flight_requests: conns.inFlight,
          open_connections: conns.open,
          timeout_ms: timeoutMs,
        },
        'shutdown timeout: closing the connections still open',
      );
      server.closeAllConnections();
      for (let i = 0; i < 2; i++) conns.closeIdle();
    }, timeoutMs);
    let lastLog = started;
    // Requests finishing leave idle keep-alive connections behind: close those too.
    const sweep = setInterval(() => {
      conns.closeIdle();
      if (Date.now() - lastLog >= 1_000) {
        lastLog = Date.now();
        logger.info(
          {
            listener: name,
            in_flight_requests: conns.inFlight,
            open_connections: conns.open,
            waited_ms: Date.now() - started,
          },
          'shutdown waiting for in-flight requests',
        );
      }
    }, 100);
    server.close(() => {
      clearTimeout(timer);
      clearInterval(sweep);
      resolve();
    });
    const closed = conns.closeIdle();
    if (conns.inFlight > 0 || closed > 0) {
      logger.info(
        { listener: name, in_flight_requests: conns.inFlight, idle_connections_closed: closed },
        conns.inFlight > 0 ? 'shutdown waiting for in-flight requests' : 'closed idle connections',
      );
    }
  });
}

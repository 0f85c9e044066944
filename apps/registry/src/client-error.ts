import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '@mesh/protocol';
import { errorBody } from './errors.ts';

/**
 * What Node's HTTP parser refuses before any route runs (a NUL or a control
 * byte in a header, a malformed request line, conflicting Content-Length,
 * headers past the size limit, a request that took too long) is answered with
 * the wire error body, like every other 4xx, rather than Node's bare
 * `400 Bad Request` with no body (issue 16: generated hostile input).
 *
 * A request whose body length cannot be known (a `Transfer-Encoding` that does
 * not end in `chunked`, RFC 9112 §6.1) never reaches a route: Node's parser
 * refuses it only after it has handed the request to the listener, so the
 * route ran while the client read 400 (a `HEAD /heartbeat` refreshed its
 * agent; the fuzzer, seed 1001370303).
 */
export function answerClientErrors(server: Server): void {
  for (const listener of server.listeners('request') as RequestListener[]) {
    server.off('request', listener);
    server.on('request', withoutUnframedBodies(listener));
  }
  // Node answers an `Expect` it does not know (anything but 100-continue) with a bare 417.
  // Its body is read and dropped first (bounded like every refused body): answered at
  // once, the connection was closed while the body still arrived, and the reset lost the
  // answer (the fuzzer, seed 1373891880: an empty Expect with a 1 MiB + 1 body).
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify(
      errorBody(
        'expectation_failed',
        `unsupported Expect header: ${JSON.stringify(req.headers.expect ?? '')}`,
      ),
    );
    drainThenClose(req, req.socket, () => {
      if (res.destroyed || req.socket.destroyed) return;
      res.writeHead(417, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body),
        Connection: 'close',
      });
      res.end(body);
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (answered.has(socket)) return;
    // Nothing to answer on a connection the peer reset, or once an answer has started
    // (the test Node's own default handler makes). A request whose Transfer-Encoding the
    // parser refuses has a response that nobody answers (it never reached the app).
    const pending = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent) {
      socket.destroy();
      return;
    }
    refuse(
      socket,
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'headers_too_large', 'request headers too large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout', 'request_timeout', 'request not received in time']
          : [400, 'Bad Request', 'bad_request', `malformed HTTP request (${err.code ?? 'parse error'})`],
    );
  });
}

/**
 * Sockets already answered: Node's failed parser reports every further chunk
 * of a body still arriving as another error, which must not close them.
 */
const answered = new WeakSet<Duplex>();

/** Answers a request the parser refused with the wire error body, then closes its connection. */
function refuse(socket: Duplex, [status, reason, code, message]: [number, string, ErrorCode, string]): void {
  const body = JSON.stringify(errorBody(code, message));
  answered.add(socket);
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  // A body still arriving (a refused request with a large Content-Length):
  // read and drop it while it keeps coming, so closing with unread data does
  // not reset the connection before the client reads the answer (as for a 413).
  drainThenClose(socket, socket, () => socket.destroy());
}

/**
 * The listener, for every request whose body is framed. One with a
 * `Transfer-Encoding` that does not end in `chunked` is left to the parser's
 * error (HPE_INVALID_TRANSFER_ENCODING), raised in the same turn right after
 * this call, which answers 400; should the parser accept it after all, it is
 * answered 400 here on the next turn. Its route never runs.
 *
 * A chunked body is read whole before its route runs: by the body bound
 * (middleware/body-limit.ts) for the methods that carry one, here for GET and HEAD, whose routes
 * never read it. Its bytes are dropped as they come; a malformed chunk is the
 * parser's 400 and the route never runs (a HEAD heartbeat refreshed its agent).
 */
function withoutUnframedBodies(listener: RequestListener): RequestListener {
  return (req, res) => {
    const codings = req.headers['transfer-encoding'];
    if (codings === undefined) {
      listener(req, res);
      return;
    }
    if (codings.split(',').at(-1)?.trim().toLowerCase() === 'chunked') {
      if (req.method !== 'GET' && req.method !== 'HEAD') listener(req, res);
      else req.once('end', () => listener(req, res)).resume();
      return;
    }
    setImmediate(() => {
      if (answered.has(req.socket) || req.socket.destroyed) return;
      refuse(req.socket, [
        400,
        'Bad Request',
        'bad_request',
        'malformed HTTP request (Transfer-Encoding must end in chunked)',
      ]);
    });
  };
}

/** How long a refused request's body may pause before the connection is closed. */
export const drainIdleMs = 2_000;
/** How long a refused request's body is read and dropped at most. */
export const drainMaxMs = 30_000;

/**
 * Reads and drops what `source` still sends, then calls `close`: when it ends,
 * after `drainIdleMs` without a byte, or after `drainMaxMs` in all. A fixed
 * 2 s was too short for a 1 MB body from a client on a loaded machine (the
 * fuzzer saw the answer lost to the reset, seed 942745081 under full-suite
 * load); a trickle cannot hold the connection past `drainMaxMs`.
 */
export function drainThenClose(source: NodeJS.ReadableStream, socket: Duplex, close: () => void): void {
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearTimeout(idle);
    clearTimeout(cap);
    source.off('data', onData).off('end', finish).off('error', finish).off('close', finish);
    close();
  };
  const idle = setTimeout(finish, drainIdleMs).unref();
  const cap = setTimeout(finish, drainMaxMs).unref();
  const onData = () => idle.refresh();
  source.on('data', onData).on('end', finish).on('error', finish).on('close', finish);
  socket.once('close', finish);
  source.resume();
}

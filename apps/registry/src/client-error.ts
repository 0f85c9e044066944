import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '@mesh/protocol';
import { errorBody } from './errors.ts';

/**
 * What Node's HTTP parser refuses before any route runs (a NUL or a control
 * byte in a header, a malformed request line, conflicting Content-Length,
 * headers past the size limit, a request that took too long) is answered with
 * the wire error body, like every other 4xx, rather than Node's bare
 * `400 Bad Request` with no body (issue 16: generated hostile input).
 */
export function answerClientErrors(server: Server): void {
  // Node answers an `Expect` it does not know (anything but 100-continue) with a bare 417.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify(
      errorBody(
        'expectation_failed',
        `unsupported Expect header: ${JSON.stringify(req.headers.expect ?? '')}`,
      ),
    );
    res.writeHead(417, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
  // Sockets already answered: Node's failed parser reports every further chunk
  // of a body still arriving as another error, which must not close them.
  const answered = new WeakSet<Duplex>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (answered.has(socket)) return;
    // Nothing to answer on a connection the peer reset, or once an answer has started
    // (the test Node's own default handler makes). A request whose body the parser
    // refuses (`Transfer-Encoding: gzip`) has reached the app, which has not answered yet.
    const pending = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent) {
      socket.destroy();
      return;
    }
    const [status, reason, code, message]: [number, string, ErrorCode, string] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'headers_too_large', 'request headers too large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout', 'request_timeout', 'request not received in time']
          : [400, 'Bad Request', 'bad_request', `malformed HTTP request (${err.code ?? 'parse error'})`];
    const body = JSON.stringify(errorBody(code, message));
    answered.add(socket);
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    // A body still arriving (a refused request with a large Content-Length):
    // read and drop it while it keeps coming, so closing with unread data does
    // not reset the connection before the client reads the answer (as for a 413).
    drainThenClose(socket, socket, () => socket.destroy());
  });
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

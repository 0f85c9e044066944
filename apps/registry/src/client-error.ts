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
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
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
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    // A body still arriving (a refused request with a large Content-Length):
    // read and drop it for a while, so closing with unread data does not reset
    // the connection before the client reads the answer (as for a 413).
    socket.on('data', () => {});
    socket.resume();
    setTimeout(() => socket.destroy(), 2_000).unref();
  });
}

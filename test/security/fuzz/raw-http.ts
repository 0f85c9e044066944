import { connect } from 'node:net';

/**
 * One HTTP/1.1 request written byte for byte on a fresh TCP connection: no
 * client library normalises the method, path, headers or body, so invalid
 * UTF-8, NUL bytes, duplicate or malformed headers reach the server as given.
 */
export interface RawRequest {
  method: string;
  /** Request target as sent (may hold any byte but CR/LF, latin1). */
  target: string;
  /** Header lines in order; duplicates allowed; values are latin1 byte strings. */
  headers: [string, string][];
  body?: Buffer;
  /** `length` (Content-Length), `chunked` (Transfer-Encoding), `none` (no framing header). */
  framing: 'length' | 'chunked' | 'none';
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export function encodeRequest(req: RawRequest): Buffer {
  const lines = [`${req.method} ${req.target} HTTP/1.1`, 'Host: 127.0.0.1'];
  for (const [name, value] of req.headers) lines.push(`${name}: ${value}`);
  const body = req.body ?? Buffer.alloc(0);
  if (req.framing === 'length') lines.push(`Content-Length: ${body.length}`);
  if (req.framing === 'chunked') lines.push('Transfer-Encoding: chunked');
  lines.push('Connection: close', '', '');
  const head = Buffer.from(lines.join('\r\n'), 'latin1');
  if (req.framing !== 'chunked')
    return Buffer.concat([head, req.framing === 'length' ? body : Buffer.alloc(0)]);
  const chunks: Buffer[] = [head];
  for (let i = 0; i < body.length; i += 64 * 1024) {
    const part = body.subarray(i, i + 64 * 1024);
    chunks.push(Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(chunks);
}

/** A request as text a person can read in a failure message (bytes outside ASCII escaped, long bodies cut). */
export function describeRequest(req: RawRequest, max = 1500): string {
  const bytes = encodeRequest(req);
  let text = '';
  for (const b of bytes.subarray(0, max)) {
    if (b === 0x0a) text += '\\n\n';
    else if (b === 0x0d) text += '\\r';
    else if (b >= 0x20 && b < 0x7f) text += String.fromCharCode(b);
    else text += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return bytes.length > max ? `${text}… (${bytes.length} bytes in all)` : text;
}

function decodeChunked(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = Number.parseInt(raw.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(raw.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** Sends the request and reads the answer until the server closes the connection. */
export function sendRaw(port: number, req: RawRequest, timeoutMs = 15_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (d) => received.push(d));
    // The server may close while the body is still being written (e.g. 413): read what it answered.
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      let all = Buffer.concat(received);
      // Skip interim answers (`100 Continue` to an `Expect: 100-continue`).
      while (/^HTTP\/1\.1 1\d\d /.test(all.subarray(0, 13).toString('latin1'))) {
        const interim = all.indexOf('\r\n\r\n');
        if (interim < 0) break;
        all = all.subarray(interim + 4);
      }
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) {
        reject(new Error(`connection closed without a complete answer (${all.length} bytes)`));
        return;
      }
      const [statusLine = '', ...lines] = all.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(statusLine.split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const rest = all.subarray(end + 4);
      resolve({
        status,
        headers,
        body: headers['transfer-encoding']?.includes('chunked') ? decodeChunked(rest) : rest,
      });
    });
    // No half-close: Node's server aborts a request whose client ended its side
    // (no answer at all); `Connection: close` makes the server close after answering.
    socket.write(encodeRequest(req));
  });
}

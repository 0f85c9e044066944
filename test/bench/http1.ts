/**
 * The load generator's HTTP client: one keep-alive HTTP/1.1 connection per
 * worker, one request at a time, JSON in and out.
 *
 * The generator shares the machine's two cores with the registry under test and
 * PostgreSQL, so every microsecond it spends is taken from them. node:http's
 * client costs it about 140–200 µs of CPU per request on this machine, undici's
 * Client about 100, this one about 35 (the figures are in docs/benchmarks.md).
 * It understands what the two registries answer: a status line, headers, and a
 * body framed by Content-Length or chunked transfer encoding.
 */
import net from 'node:net';

export interface Http1Response {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: the benchmark reads two registries' bodies loosely
  json: any;
}

const crlfcrlf = Buffer.from('\r\n\r\n');

/** Where a complete response ends in `buf`, and what it says; undefined while more bytes are needed. */
export function parseResponse(
  buf: Buffer,
  method: string,
): { end: number; status: number; body: string; close: boolean } | undefined {
  const headEnd = buf.indexOf(crlfcrlf);
  if (headEnd < 0) return undefined;
  const head = buf.toString('latin1', 0, headEnd);
  const lines = head.split('\r\n');
  const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!statusLine) throw new Error(`not an HTTP/1.x response: ${JSON.stringify(lines[0])}`);
  const status = Number(statusLine[1]);
  let length: number | undefined;
  let chunked = false;
  let close = (lines[0] ?? '').startsWith('HTTP/1.0');
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line
      .slice(colon + 1)
      .trim()
      .toLowerCase();
    if (name === 'content-length') length = Number(value);
    else if (name === 'transfer-encoding') chunked = value.split(',').some((v) => v.trim() === 'chunked');
    else if (name === 'connection') close = value === 'close';
  }
  const bodyStart = headEnd + 4;
  if (method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200))
    return { end: bodyStart, status, body: '', close };
  if (chunked) {
    const parts: Buffer[] = [];
    let at = bodyStart;
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at);
      if (lineEnd < 0) return undefined;
      const size = Number.parseInt(buf.toString('latin1', at, lineEnd), 16);
      if (Number.isNaN(size)) throw new Error('bad chunk size in a chunked response');
      if (size === 0) {
        // No trailers from either registry: the last chunk is followed by an empty line.
        if (buf.length < lineEnd + 4) return undefined;
        return { end: lineEnd + 4, status, body: Buffer.concat(parts).toString('utf8'), close };
      }
      if (buf.length < lineEnd + 2 + size + 2) return undefined;
      parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  if (length === undefined) throw new Error('response without Content-Length or chunked encoding');
  if (buf.length < bodyStart + length) return undefined;
  return {
    end: bodyStart + length,
    status,
    body: buf.toString('utf8', bodyStart, bodyStart + length),
    close,
  };
}

export class Http1Connection {
  private socket: net.Socket | undefined;
  private buf: Buffer = Buffer.alloc(0);
  private pending:
    | { method: string; resolve: (r: Http1Response) => void; reject: (e: Error) => void }
    | undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  private connect(): net.Socket {
    const socket = net.connect(this.port, this.host);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (this.socket !== socket) return;
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      this.onData();
    });
    const fail = (err: Error) => {
      if (this.socket !== socket) return; // a connection given up already
      this.socket = undefined;
      this.buf = Buffer.alloc(0);
      const p = this.pending;
      this.pending = undefined;
      p?.reject(err);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed before the response')));
    return socket;
  }

  private onData() {
    const p = this.pending;
    if (!p) return;
    let parsed: ReturnType<typeof parseResponse>;
    try {
      parsed = parseResponse(this.buf, p.method);
    } catch (err) {
      this.pending = undefined;
      this.socket?.destroy();
      p.reject(err as Error);
      return;
    }
    if (!parsed) return;
    this.buf = this.buf.subarray(parsed.end);
    this.pending = undefined;
    if (parsed.close) {
      this.socket?.destroy();
      this.socket = undefined;
      this.buf = Buffer.alloc(0);
    }
    let json: unknown;
    try {
      json = parsed.body ? JSON.parse(parsed.body) : undefined;
    } catch {
      json = parsed.body;
    }
    p.resolve({ status: parsed.status, json });
  }

  request(method: string, path: string, body?: unknown): Promise<Http1Response> {
    if (this.pending) return Promise.reject(new Error('one request at a time per connection'));
    if (!this.socket || this.socket.destroyed) this.socket = this.connect();
    const payload = body === undefined ? '' : JSON.stringify(body);
    const head =
      `${method} ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\n` +
      (body === undefined ? '' : 'content-type: application/json\r\n') +
      `content-length: ${Buffer.byteLength(payload)}\r\n\r\n`;
    return new Promise((resolve, reject) => {
      this.pending = { method, resolve, reject };
      this.socket?.write(head + payload);
    });
  }

  close() {
    this.socket?.destroy();
    this.socket = undefined;
  }
}

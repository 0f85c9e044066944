import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Http1Connection, parseResponse } from './http1.ts';

// The load generator's HTTP client reads what the registries answer: bodies
// framed by Content-Length or chunked, arriving in any number of pieces.
describe('bench HTTP/1.1 client', () => {
  it('parses a response only once all of it has arrived', () => {
    const full = Buffer.from(
      'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{"a":12}',
    );
    for (let cut = 0; cut < full.length; cut++)
      expect(parseResponse(full.subarray(0, cut), 'POST')).toBeUndefined();
    expect(parseResponse(full, 'POST')).toEqual({
      end: full.length,
      status: 201,
      body: '{"a":12}',
      close: false,
    });
    const chunked = Buffer.from(
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n{"a"\r\n4\r\n:12}\r\n0\r\n\r\nHTTP/1.1',
    );
    const parsed = parseResponse(chunked, 'GET');
    expect(parsed).toMatchObject({ status: 200, body: '{"a":12}', close: true });
    expect(chunked.subarray(parsed?.end).toString()).toBe('HTTP/1.1'); // the next response is left alone
    for (let cut = 0; cut < (parsed?.end ?? 0); cut++)
      expect(parseResponse(chunked.subarray(0, cut), 'GET')).toBeUndefined();
    expect(parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n'), 'HEAD')).toMatchObject({
      body: '',
    });
    expect(() => parseResponse(Buffer.from('SSH-2.0\r\n\r\n'), 'GET')).toThrow(/not an HTTP/);
  });

  let server: http.Server;
  let port = 0;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        const answer = JSON.stringify({
          method: req.method,
          url: req.url,
          got: body ? JSON.parse(body) : null,
        });
        if (req.url === '/chunked') {
          // Written in pieces without a length: node:http frames it chunked.
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write(answer.slice(0, 5));
          setTimeout(() => res.end(answer.slice(5)), 5);
        } else if (req.url === '/close') {
          res.writeHead(202, { connection: 'close', 'content-length': Buffer.byteLength(answer) });
          res.end(answer);
        } else {
          res.writeHead(200, { 'content-length': Buffer.byteLength(answer) });
          res.end(answer);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('sends JSON requests one after another on one connection, and reconnects after a close', async () => {
    const conn = new Http1Connection('127.0.0.1', port);
    try {
      for (let i = 0; i < 20; i++) {
        const res = await conn.request('POST', '/jobs', { i, text: 'é' });
        expect(res).toEqual({ status: 200, json: { method: 'POST', url: '/jobs', got: { i, text: 'é' } } });
      }
      expect((await conn.request('GET', '/chunked')).json).toEqual({
        method: 'GET',
        url: '/chunked',
        got: null,
      });
      expect((await conn.request('POST', '/close', {})).status).toBe(202);
      expect((await conn.request('POST', '/after', { x: 1 })).json).toMatchObject({
        url: '/after',
        got: { x: 1 },
      });
      await expect(Promise.all([conn.request('GET', '/a'), conn.request('GET', '/b')])).rejects.toThrow(
        /one request at a time/,
      );
    } finally {
      conn.close();
    }
  });

  it('fails a request whose connection is refused or dropped', async () => {
    const closed = http.createServer((req) => req.socket.destroy());
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const conn = new Http1Connection('127.0.0.1', (closed.address() as AddressInfo).port);
    await expect(conn.request('GET', '/')).rejects.toThrow();
    conn.close();
    await new Promise((r) => closed.close(r));
  });
});

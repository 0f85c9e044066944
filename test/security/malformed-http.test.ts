import { type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import { type RawRequest, sendRaw } from './fuzz/raw-http.ts';

// Cases the generated-input test (fuzz.test.ts) found, kept as plain
// regression tests: requests refused before any route runs still get the wire
// error body, and a body past the limit gets its 413 rather than a reset.
const db = useTestDatabase();
let r: RegistryProcess;

beforeAll(async () => {
  r = await spawnRegistry({ databaseUrl: db.url, replicaId: 'malformed' });
});

const wire = (code: string) => ({ error: expect.any(String), timestamp: expect.any(String), code });
const send = async (req: Partial<RawRequest>) => {
  const res = await sendRaw(r.port, { method: 'GET', target: '/', headers: [], framing: 'none', ...req });
  return { status: res.status, type: res.headers['content-type'], body: JSON.parse(res.body.toString()) };
};

describe('malformed HTTP gets the wire error body (issue 16, found by the fuzzer)', () => {
  it('a NUL byte in a header value: 400 bad_request (was a bare 400 from Node)', async () => {
    const res = await send({ headers: [['X-Bad', 'a\u0000b']] });
    expect(res).toEqual({ status: 400, type: 'application/json', body: wire('bad_request') });
    expect(res.body.error).toBe('malformed HTTP request (HPE_INVALID_HEADER_TOKEN)');
  });

  it('headers past the size limit: 431 headers_too_large (was a bare 431)', async () => {
    const res = await send({ headers: [['X-Long', 'v'.repeat(20_000)]] });
    expect(res).toEqual({ status: 431, type: 'application/json', body: wire('headers_too_large') });
  });

  it('an Expect other than 100-continue: 417 expectation_failed (was a bare 417)', async () => {
    const res = await send({ headers: [['Expect', '']] });
    expect(res).toEqual({ status: 417, type: 'application/json', body: wire('expectation_failed') });
  });

  it('Transfer-Encoding: gzip on a POST: 400 bad_request (was no answer at all)', async () => {
    const res = await send({
      method: 'POST',
      target: '/jobs/signals',
      headers: [
        ['Content-Type', 'application/json'],
        ['Transfer-Encoding', 'gzip'],
      ],
    });
    expect(res).toEqual({ status: 400, type: 'application/json', body: wire('bad_request') });
    expect(res.body.error).toBe('malformed HTTP request (HPE_INVALID_TRANSFER_ENCODING)');
  });

  it('a 4 MB body with its Content-Length, to a route or not: the client reads 413 (was a connection reset)', async () => {
    const body = Buffer.from(`{"agent_id":"a","tools":[${Array(1_390_000).fill('{}').join(',')}]}`);
    expect(body.length).toBeGreaterThan(4_000_000);
    for (const method of ['POST', 'TRACE', 'PUT', 'POST', 'TRACE']) {
      const res = await send({
        method,
        target: '/heartbeat',
        headers: [['Content-Type', 'application/json']],
        body,
        framing: 'length',
      });
      expect(res).toEqual({ status: 413, type: 'application/json', body: wire('payload_too_large') });
    }
  });
});

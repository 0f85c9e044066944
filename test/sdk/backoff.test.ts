import { createServer, type Server } from 'node:http';
import { RegistryClient, RegistryError } from '@mesh/sdk';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Issue 16: the SDK backs off on 429/503 honouring Retry-After. The registry
 * here is a scripted HTTP server (the client's retry timing is the subject,
 * not the registry): it sheds the first tries, then answers.
 */
const servers: Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function scripted(answers: { status: number; retryAfter?: string }[]) {
  const seen: number[] = [];
  const server = createServer((req, res) => {
    req.resume();
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'healthy', version: '0.2.0', features: ['idempotent-submit'] }));
      return;
    }
    seen.push(Date.now());
    const a = answers.shift() ?? { status: 201 };
    res.writeHead(a.status, {
      'content-type': 'application/json',
      ...(a.retryAfter ? { 'retry-after': a.retryAfter } : {}),
    });
    res.end(
      JSON.stringify(
        a.status === 201
          ? { id: 'job-1', status: 'working', owner_instance_id: null }
          : { error: 'registry overloaded', code: 'overloaded', timestamp: new Date().toISOString() },
      ),
    );
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen };
}

describe('SDK backoff on 429 and 503', () => {
  it('retries a shed submission no sooner than Retry-After, on 503 and on 429', async () => {
    const s = await scripted([
      { status: 503, retryAfter: '1' },
      { status: 429, retryAfter: '1' },
    ]);
    const client = new RegistryClient({ urls: [s.url], attempts: 4 });
    const created = await client.submit({ capability: 'c', submitted_by: 'me', submitted_payload: {} });
    expect(created.id).toBe('job-1');
    expect(s.seen).toHaveLength(3);
    const gaps = s.seen.slice(1).map((t, i) => t - (s.seen[i] as number));
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(1_000);
  });

  it('gives the caller Retry-After on a request it does not retry (a claim)', async () => {
    const s = await scripted([{ status: 503, retryAfter: '3' }]);
    const client = new RegistryClient({ urls: [s.url] });
    const err = await client
      .request('POST', '/jobs/claim', { capability: 'c', instance_id: 'i' })
      .catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err).toMatchObject({ status: 503, retryAfterMs: 3_000, retryable: true });
  });
});

import { describe, expect, it } from 'vitest';
import { resolveTarget } from './connection.ts';
import { UsageError } from './errors.ts';

describe('resolveTarget (meshctl 3.7.1 rules, plus MESH_REGISTRY_URL and the admin URL)', () => {
  it('defaults to localhost:8000 and probes the scheme', () => {
    expect(resolveTarget({}, {})).toMatchObject({
      url: 'http://localhost:8000',
      adminUrl: 'http://localhost:8000',
      probeScheme: true,
      timeoutMs: 30_000,
    });
  });

  it('flags beat the environment: --registry-url, host/port flags, MESH_REGISTRY_URL, host/port env', () => {
    const env = {
      MESH_REGISTRY_URL: 'http://env:1',
      MCP_MESH_REGISTRY_HOST: 'h',
      MCP_MESH_REGISTRY_PORT: '2',
    };
    expect(resolveTarget({ 'registry-url': 'https://flag:3/' }, env)).toMatchObject({
      url: 'https://flag:3',
      probeScheme: false,
    });
    expect(resolveTarget({}, env).url).toBe('http://env:1');
    expect(resolveTarget({}, { MCP_MESH_REGISTRY_HOST: 'h', MCP_MESH_REGISTRY_PORT: '2' }).url).toBe(
      'http://h:2',
    );
    expect(
      resolveTarget({ 'registry-host': 'x', 'registry-port': 9, 'registry-scheme': 'https' }, env),
    ).toMatchObject({ url: 'https://x:9' });
    expect(
      resolveTarget({ 'registry-host': 'x', 'registry-port': 9, 'registry-scheme': 'https' }, {}),
    ).toMatchObject({ url: 'https://x:9', probeScheme: false });
  });

  it('takes the admin URL and token from flags or the environment', () => {
    const t = resolveTarget(
      { 'registry-url': 'http://a:8000' },
      { MESH_ADMIN_URL: 'http://a:8001', MESH_ADMIN_TOKEN: 'tok' },
    );
    expect(t).toMatchObject({ adminUrl: 'http://a:8001', adminToken: 'tok' });
    expect(
      resolveTarget({ 'registry-url': 'http://a:8000', 'admin-token': 'f' }, { MESH_ADMIN_TOKEN: 'e' })
        .adminToken,
    ).toBe('f');
  });

  it('refuses what is not a URL, a bad port or a bad timeout, as usage errors', () => {
    expect(() => resolveTarget({ 'registry-url': 'localhost:8000' }, {})).toThrow(UsageError);
    expect(() => resolveTarget({ 'registry-url': 'ftp://x' }, {})).toThrow(/http\(s\) URL/);
    expect(() => resolveTarget({ 'registry-port': 70000 }, {})).toThrow(/port/);
    expect(() => resolveTarget({}, { MCP_MESH_REGISTRY_PORT: 'abc' })).toThrow(/port/);
    expect(() => resolveTarget({ timeout: 0 }, {})).toThrow(/--timeout/);
    expect(() => resolveTarget({ 'admin-url': 'nope' }, {})).toThrow(/--admin-url/);
  });
});

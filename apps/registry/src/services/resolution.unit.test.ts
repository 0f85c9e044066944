import { describe, expect, it } from 'vitest';
import { type Provider, Resolver, tagScore, versionMatches } from './resolution.ts';

const provider = (agentId: string, over: Partial<Provider> = {}): Provider => ({
  agentId,
  functionName: `${agentId}-fn`,
  capability: 'weather',
  version: '1.0.0',
  tags: [],
  kwargs: null,
  endpoint: `http://${agentId}:9000`,
  healthy: true,
  dependencies: [],
  ...over,
});

describe('tag matching (MCP Mesh §1.8)', () => {
  it('requires plain tags, prefers +tags, excludes -tags, and scores OR groups', () => {
    expect(tagScore(['eu'], ['eu', 'fast'])).toBe(5);
    expect(tagScore(['eu'], ['us'])).toBeNull();
    expect(tagScore(['+fast'], ['eu'])).toBe(0);
    expect(tagScore(['+fast'], ['fast'])).toBe(10);
    expect(tagScore(['-beta'], ['beta'])).toBeNull();
    expect(tagScore([['eu', 'us']], ['us'])).toBe(5);
    expect(tagScore([['eu', '+us']], ['us'])).toBe(10);
    expect(tagScore([['eu', 'us']], ['asia'])).toBeNull();
    expect(tagScore([['eu', '-beta']], ['eu', 'beta'])).toBeNull();
  });

  it('matches semver constraints and falls back to equality for non-semver versions', () => {
    expect(versionMatches('>=1.2.0', '1.3.0')).toBe(true);
    expect(versionMatches('^1.2', '2.0.0')).toBe(false);
    expect(versionMatches('~1.2.3', '1.2.9')).toBe(true);
    expect(versionMatches('v-latest', 'v-latest')).toBe(true);
    expect(versionMatches('>=1.0.0', '')).toBe(false);
  });
});

describe('Resolver', () => {
  it('picks the best tag score, then the highest version, then the smallest agent id', () => {
    const r = new Resolver([
      provider('b', { tags: ['eu'], version: '1.0.0' }),
      provider('a', { tags: ['eu'], version: '1.0.0' }),
      provider('c', { tags: ['eu'], version: '1.2.0' }),
      provider('d', { tags: ['eu', 'fast'], version: '0.1.0' }),
    ]);
    expect(r.best({ capability: 'weather', tags: ['eu', '+fast'] })?.agentId).toBe('d');
    expect(r.best({ capability: 'weather', tags: ['eu'] })?.agentId).toBe('c');
    expect(r.best({ capability: 'weather', tags: ['eu'], version: '<1.1' })?.agentId).toBe('a');
  });

  it('skips unhealthy providers and providers whose required dependencies are unavailable, transitively', () => {
    const r = new Resolver([
      provider('sick', { healthy: false }),
      provider('needs-geo', { dependencies: [{ capability: 'geo', required: true }] }),
      provider('geo-1', { capability: 'geo', dependencies: [{ capability: 'tiles', required: true }] }),
    ]);
    expect(r.best({ capability: 'weather' })).toBeUndefined();
    expect(r.unavailableReason(r['byCapability'].get('weather')?.[1] as Provider)).toBe(
      "required dep 'geo' unresolved",
    );
  });

  it('answers one element per declared dependency, in order, with the unresolved placeholder', () => {
    const r = new Resolver([provider('w', { kwargs: { timeout: 30 } })]);
    expect(r.resolveAll([{ capability: 'weather' }, { capability: 'nowhere' }])).toEqual([
      {
        agent_id: 'w',
        function_name: 'w-fn',
        endpoint: 'http://w:9000',
        capability: 'weather',
        status: 'available',
        kwargs: { timeout: 30 },
      },
      { agent_id: '', function_name: '', endpoint: '', capability: 'nowhere', status: 'unresolved' },
    ]);
  });

  it('resolves a repeated dependency once: the cost follows the distinct dependencies, not their count (issue 18)', async () => {
    const providers = Array.from({ length: 5_000 }, (_, i) => provider(`p${i}`, { capability: '' }));
    const r = new Resolver(providers);
    const resolved = await r.resolveAllAsync(Array(2_000).fill({ capability: '' }), 1_000);
    expect(resolved).toHaveLength(2_000);
    expect(new Set(resolved.map((x) => x.agent_id))).toEqual(new Set(['p0']));
    expect(r.work).toBe(5_000);
  });
});

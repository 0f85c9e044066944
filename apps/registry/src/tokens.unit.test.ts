import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tokenFile, tokenList, tokenMatcher } from './tokens.ts';

describe('tokens', () => {
  it('matches any configured token, only as "Bearer <token>"', () => {
    const matches = tokenMatcher(['old-token-1', 'new-token-2']);
    expect(matches('Bearer old-token-1')).toBe(true);
    expect(matches('bearer new-token-2')).toBe(true);
    expect(matches('Bearer  new-token-2 ')).toBe(true);
    for (const h of [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      'old-token-1',
      'Basic old-token-1',
      'Bearer old-token-1 x',
    ]) {
      expect(matches(h), String(h)).toBe(false);
    }
    expect(matches('Bearer old-token')).toBe(false);
    expect(matches('Bearer old-token-12')).toBe(false);
    expect(tokenMatcher([])('Bearer anything-at-all')).toBe(false);
  });

  it('reads comma-separated lists and files of one token per line', () => {
    expect(tokenList(' a-token-01 , b-token-02 ,')).toEqual({
      ok: true,
      value: ['a-token-01', 'b-token-02'],
    });
    expect(tokenList('short')).toMatchObject({ ok: false });
    expect(tokenList('with space inside')).toMatchObject({ ok: false });
    const file = join(mkdtempSync(join(tmpdir(), 'tokens-')), 't');
    writeFileSync(file, '# rotation: old then new\r\nold-token-1\n\n  new-token-2  \n');
    expect(tokenFile(file)).toEqual({ ok: true, value: ['old-token-1', 'new-token-2'] });
    expect(tokenFile(`${file}.missing`)).toMatchObject({
      ok: false,
      problem: expect.stringContaining('ENOENT'),
    });
  });
});

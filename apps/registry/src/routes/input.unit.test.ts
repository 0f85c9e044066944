import { describe, expect, it } from 'vitest';
import { scanJson } from './input.ts';

describe('scanJson', () => {
  it('counts the items of the top-level object’s arrays, by key, skipping strings and nested arrays', () => {
    const r = scanJson('{"tools":[{},{"x":[1,2]},{}],"a":[1,"x],[",[2,3]],"b":[ ], "s":"[1,2]"}');
    expect(Object.fromEntries(r.topArrays)).toEqual({ tools: 3, a: 3, b: 0 });
    expect(r.depth).toBe(4);
  });

  it('takes the key before the array, not a string value before it', () => {
    expect(Object.fromEntries(scanJson('{"k":"tools","deltas":[ "a" , "b\\"," ]}').topArrays)).toEqual({
      deltas: 2,
    });
  });

  it('counts nothing in a top-level array, and measures depth past any count', () => {
    const r = scanJson('[[1,2,3],[[[]]]]');
    expect(r.topArrays.size).toBe(0);
    expect(r.depth).toBe(4);
  });

  it('counts 300,000 empty tools without parsing them', () => {
    const text = `{"agent_id":"w","tools":[${Array(300_000).fill('{}').join(',')}]}`;
    expect(scanJson(text).topArrays.get('tools')).toBe(300_000);
  });
});

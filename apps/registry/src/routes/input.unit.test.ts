import { describe, expect, it } from 'vitest';
import { scanJson as scanBytes } from './input.ts';

const scanJson = (text: string, bounds?: Parameters<typeof scanBytes>[1]) =>
  scanBytes(Buffer.from(text), bounds);

describe('scanJson', () => {
  it('counts the items of the top-level object’s arrays, by key, skipping strings and nested arrays', () => {
    const r = scanJson('{"tools":[{},{"x":[1,2]},{}],"a":[1,"x],[",[2,3]],"b":[ ], "s":"[1,2]"}');
    expect(Object.fromEntries(r.topArrays)).toEqual({ tools: 3, a: 3, b: 0 });
    expect(r.depth).toBe(4);
  });

  it('scans UTF-8 bytes: multi-byte characters in strings and keys are never structure', () => {
    const r = scanJson('{"é[":"»{","tools":["日本[", "\\"]", "ü]"], "ключ":[1]}');
    expect(r.topArrays.get('tools')).toBe(3);
    expect(r.topArrays.size).toBe(2);
    expect(r.depth).toBe(2);
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

  it('stops once an array is ten times past its bound, or the nesting past its bound', () => {
    const text = `{"tools":[${Array(300_000).fill('{}').join(',')}],"deep":[[[[1]]]]}`;
    const r = scanJson(text, { maxItems: { tools: [256, 'tools'] } });
    expect(r.topArrays.get('tools')).toBe(2_561);
    expect(scanJson('{"a":[[[[[[1]]]]]],"b":[1]}', { maxDepth: 3 })).toEqual({
      depth: 4,
      topArrays: new Map(),
    });
    // Within its bound an array is counted whole and the scan goes on.
    expect(
      Object.fromEntries(
        scanJson('{"tools":[1,2],"b":[3]}', { maxItems: { tools: [2, 'tools'] } }).topArrays,
      ),
    ).toEqual({ tools: 2, b: 1 });
  });

  it('names a key spelled with escapes as JSON.parse will, so its bound still holds', () => {
    const text = `{"too\\u006cs":[${Array(300).fill('{}').join(',')}],"\\"x":[1]}`;
    expect(JSON.parse(text).tools).toHaveLength(300);
    const r = scanJson(text, { maxItems: { tools: [2, 'tools'] } });
    expect(r.topArrays.get('tools')).toBe(21);
    expect(Object.fromEntries(scanJson('{"\\"x":[1],"\\q":[2]}').topArrays)).toEqual({ '"x': 1, '': 1 });
  });

  it('finds a string’s end past escaped quotes and runs of backslashes', () => {
    const text = String.raw`{"a":"x\\","b":"q\"[{","c":"\\\"],","tools":[1,"\\",2],"d":"${'z'.repeat(20_000)}"}`;
    expect(Object.keys(JSON.parse(text))).toEqual(['a', 'b', 'c', 'tools', 'd']);
    expect(scanJson(text)).toEqual({ depth: 2, topArrays: new Map([['tools', 3]]) });
    expect(scanJson('{"tools":[1,"unterminated')).toEqual({ depth: 2, topArrays: new Map() });
  });
});

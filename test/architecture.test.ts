import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ESM script without declarations (scripts/architecture.mjs)
import { limits, measure } from '../scripts/architecture.mjs';

interface Measures {
  files: number;
  cycles: string[][];
  longFunctions: { file: string; line: number; name: string; lines: number }[];
  longFiles: { file: string; lines: number }[];
}

// Issue 36: the source a newcomer reads stays easy to see. Over apps/*/src and
// packages/*/src (tests and generated files aside), parsed with the
// TypeScript compiler: no import cycle (type-only imports included), no
// function or method over 120 lines, no file over 600 lines. The same
// measures print with `node scripts/architecture.mjs`.
describe('the architecture a newcomer reads (issue 36)', () => {
  const m = measure() as Measures;

  it('parses the whole source', () => {
    expect(m.files).toBeGreaterThan(100);
    expect(limits).toEqual({ functionLines: 120, fileLines: 600 });
  });

  it('has no import cycle', () => {
    expect(m.cycles).toEqual([]);
  });

  it(`has no function or method over ${limits.functionLines} lines`, () => {
    expect(m.longFunctions.map((f) => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`)).toEqual([]);
  });

  it(`has no source file over ${limits.fileLines} lines`, () => {
    expect(m.longFiles.map((f) => `${f.file} (${f.lines} lines)`)).toEqual([]);
  });
});

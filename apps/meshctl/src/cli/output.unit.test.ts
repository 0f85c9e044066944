import { describe, expect, it } from 'vitest';
import { formatAge, table, unixToIso } from './output.ts';

describe('output helpers', () => {
  it('pads table columns to the widest cell, ignoring colour codes', () => {
    const esc = String.fromCharCode(27);
    const out = table(
      ['NAME', 'STATUS'],
      [
        ['a', `${esc}[32mhealthy${esc}[39m`],
        ['longer-name', 'x'],
      ],
    );
    expect(out.split('\n')).toEqual([
      'NAME         STATUS',
      '--------------------',
      `a            ${esc}[32mhealthy${esc}[39m`,
      'longer-name  x',
    ]);
  });

  it('formats ages and Unix times like meshctl 3.7.1', () => {
    expect(formatAge(12_400)).toBe('12s');
    expect(formatAge(303_000)).toBe('5m3s');
    expect(formatAge(7_500_000)).toBe('2h5m');
    expect(formatAge(2 * 86_400_000)).toBe('2d');
    expect(unixToIso(1_795_313_430)).toBe('2026-11-22T02:10:30Z');
    expect(unixToIso(null)).toBe('-');
    expect(unixToIso(0)).toBe('-');
  });
});

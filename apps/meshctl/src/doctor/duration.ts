import { UsageError } from '../cli/errors.ts';

const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration flag as the registry spells its own (`5s`, `1m30s`, `500ms`,
 * `2h`, or a bare number of seconds), in milliseconds.
 *
 * @example
 *   parseDurationFlag('--sweep-interval', '1m30s'); // 90000
 */
export function parseDurationFlag(flag: string, raw: string | number): number {
  const t = String(raw).trim();
  let ms: number | undefined;
  if (/^\d+(\.\d+)?$/.test(t)) ms = Math.round(Number(t) * 1_000);
  else if (/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(t)) {
    ms = 0;
    for (const [, n, unit] of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g))
      ms += Number(n) * (units[unit as string] ?? 0);
    ms = Math.round(ms);
  }
  if (ms === undefined || ms <= 0) {
    throw new UsageError(
      `${flag} must be a positive duration such as 5s, 1m30s, 500ms or a number of seconds, got "${raw}"`,
    );
  }
  return ms;
}

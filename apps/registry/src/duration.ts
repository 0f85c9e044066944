const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a duration into milliseconds: a Go-style duration (`1m30s`, `500ms`,
 * `2h`), as MCP Mesh's env vars use, plus days (`7d`), or a bare number of
 * seconds (`30`).
 * Returns undefined when the text is not a duration.
 */
export function parseDurationMs(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1_000);
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(t)) return undefined;
  let total = 0;
  for (const [, n, unit] of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g))
    total += Number(n) * (units[unit as string] ?? 0);
  return Math.round(total);
}

/**
 * Formats milliseconds the way Go's time.Duration prints (`4s`, `1m30s`,
 * `3h0m0s`, `500ms`): MCP Mesh puts such strings in its stale-job errors.
 */
export function formatGoDuration(ms: number): string {
  if (ms < 1_000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1_000;
  const sec = `${Number.isInteger(s) ? s : s.toFixed(3).replace(/0+$/, '')}s`;
  if (h > 0) return `${h}h${m}m${sec}`;
  if (m > 0) return `${m}m${sec}`;
  return sec;
}

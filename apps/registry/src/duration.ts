const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration into milliseconds: a Go-style duration (`1m30s`, `500ms`,
 * `2h`), as MCP Mesh's env vars use, or a bare number of seconds (`30`).
 * Returns undefined when the text is not a duration.
 */
export function parseDurationMs(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1_000);
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(t)) return undefined;
  let total = 0;
  for (const [, n, unit] of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g))
    total += Number(n) * (units[unit as string] ?? 0);
  return Math.round(total);
}

// Retry pacing of `RegistryClient.send`: the pause between attempts and the
// registry's `Retry-After`.

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The longest `Retry-After` the client honours: a registry's hint, not a reason to stall a minute. */
const maxRetryAfterMs = 30_000;

/**
 * `Retry-After` (delay-seconds or an HTTP date) in ms, capped; undefined
 * when absent or unreadable.
 *
 * @example retryAfterMs(new Headers({ 'retry-after': '2' })) // 2000
 */
export function retryAfterMs(h: Headers): number | undefined {
  const raw = h.get('retry-after')?.trim();
  if (!raw) return undefined;
  const ms = /^\d+$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw) - Date.now();
  return Number.isFinite(ms) ? Math.min(maxRetryAfterMs, Math.max(0, ms)) : undefined;
}

import { limits } from './limits.ts';

// Printable ASCII without `"` and `\`: a key needs no escaping as the draft's
// structured-field string, and reads the same quoted or bare.
const keyPattern = /^[\x20\x21\x23-\x5b\x5d-\x7e]+$/;

/**
 * Reads an `Idempotency-Key` header value: the IETF draft's quoted
 * structured-field string (`"k"`) or a bare token (`k`, as most APIs take it),
 * both meaning the key `k`. Returns the key, or the reason it is refused.
 *
 * @example
 * parseIdempotencyKey('"8e03978e-40d5-43e8-bc93-6894a57f9324"'); // { key: '8e03978e-…' }
 */
export function parseIdempotencyKey(value: string): { key: string } | { error: string } {
  const trimmed = value.trim();
  const key =
    trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"') ? trimmed.slice(1, -1) : trimmed;
  if (key.length === 0) return { error: 'Idempotency-Key must not be empty' };
  if (key.length > limits.maxIdempotencyKeyLength) {
    return {
      error: `Idempotency-Key must be at most ${limits.maxIdempotencyKeyLength} characters, got ${key.length}`,
    };
  }
  if (!keyPattern.test(key)) {
    return { error: 'Idempotency-Key must be printable ASCII without " or \\' };
  }
  return { key };
}

/**
 * The header value for a key: the draft's structured-field string.
 *
 * @example
 * fetch(url, { method: 'POST', headers: { [headers.idempotencyKey]: formatIdempotencyKey(crypto.randomUUID()) } });
 */
export function formatIdempotencyKey(key: string): string {
  const parsed = parseIdempotencyKey(key);
  if ('error' in parsed) throw new RangeError(parsed.error);
  return `"${parsed.key}"`;
}

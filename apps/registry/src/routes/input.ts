import { limits } from '@mesh/protocol';
import type { Context } from 'hono';
import type { z } from 'zod';
import { ApiError } from '../errors.ts';

/**
 * Reads a JSON body the way MCP Mesh 3.7 (Go) does: unknown fields ignored, a
 * body that is not JSON or has a wrong type for a known field rejected whole
 * with `Invalid JSON payload: …` (400). `optional` bodies may be empty.
 */
export async function readJson<T extends z.ZodType>(
  c: Context,
  schema: T,
  options: {
    optional?: boolean;
    /**
     * Bounds on arrays that are members of the top-level object, by key: the
     * most items and what one item is called (`{ tools: [256, 'tools per
     * agent'] }`). Counted by the scan that bounds nesting, before the text is
     * parsed (300,000 empty tools cost ~60 ms of JSON.parse on the event loop
     * shared with every other caller, issue 18); the scan stops at 10× the
     * bound. The count is exact (keys spelled with escapes included), so the
     * route needs no second check after the parse.
     */
    maxItems?: Record<string, readonly [max: number, what: string]>;
  } = {},
): Promise<z.infer<T>> {
  // Scanned as bytes (UTF-8 multi-byte sequences never hold an ASCII byte):
  // a body refused by the scan is never decoded.
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  // A large body is scanned and parsed after what else is ready on the event
  // loop (small requests, database answers): a flood of big bodies then costs
  // the other callers a turn, not its parse each (issue 18).
  if (bytes.length > largeBody) await new Promise(setImmediate);
  if (options.optional && bytes.every(isJsonSpace)) return schema.parse({});
  const shape = scanJson(bytes, { maxDepth: limits.maxJsonDepth, maxItems: options.maxItems });
  if (shape.depth > limits.maxJsonDepth) {
    throw new ApiError(
      'bad_request',
      `Invalid JSON payload: nested deeper than ${limits.maxJsonDepth} levels`,
    );
  }
  for (const [key, [max, what]] of Object.entries(options.maxItems ?? {})) {
    const n = shape.topArrays.get(key) ?? 0;
    if (n > max) {
      const got = n > scanItemsCap(max) ? `more than ${scanItemsCap(max)}` : String(n);
      throw new ApiError('bad_request', `at most ${max} ${what}, got ${got}`);
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (err) {
    throw new ApiError('bad_request', `Invalid JSON payload: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ApiError('bad_request', 'Invalid JSON payload: the body must be a JSON object');
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
    throw new ApiError('bad_request', `Invalid JSON payload: ${where}${issue?.message ?? 'invalid value'}`);
  }
  return parsed.data;
}

/**
 * The deepest nesting of objects and arrays in a JSON text, and the item
 * counts of the arrays that are members of the top-level object (by key), by
 * one linear scan (no recursion) before anything parses, copies or serialises
 * the value (as UTF-8 bytes: no decoding first): a body nested thousands deep overflows the stack of
 * JSON.stringify later, inside statements shared with other callers, and a
 * huge array costs its parse before any bound on it can apply (issue 18).
 * The text need not be valid JSON; JSON.parse judges that afterwards.
 *
 * The scan stops as soon as the text is past a bound (`maxDepth`, or a
 * `maxItems` array past `scanItemsCap` of its bound), since the request is
 * refused then: 300,000 empty tools are refused after 2,561 of them, not
 * after 900 KB of scanning on the event loop every caller shares.
 */
export function scanJson(
  text: Uint8Array,
  bounds: { maxDepth?: number; maxItems?: Record<string, readonly [max: number, what: string]> } = {},
): { depth: number; topArrays: Map<string, number> } {
  const maxDepth = bounds.maxDepth ?? Number.POSITIVE_INFINITY;
  const topArrays = new Map<string, number>();
  let depth = 0;
  let deepest = 0;
  let inString = false;
  let stringStart = 0;
  /** The last string seen directly in the top-level object: before `[`, its key. */
  let key = '';
  /** Items of the top-level member array being scanned, or -1 outside one. */
  let items = -1;
  let itemOpen = false;
  let itemsCap = Number.POSITIVE_INFINITY;
  let topIsObject = false;
  for (let i = 0; i < text.length; i++) {
    if (inString) {
      // To the string's closing quote in one native search (most of a body's
      // bytes are in strings): a quote after an odd run of backslashes is
      // escaped, and the search goes on past it.
      let end = text.indexOf(34 /* " */, i);
      while (end > 0) {
        let slashes = 0;
        while (text[end - 1 - slashes] === 92 /* \ */) slashes += 1;
        if (slashes % 2 === 0) break;
        end = text.indexOf(34, end + 1);
      }
      if (end < 0) break; // unterminated: JSON.parse says so
      i = end;
      inString = false;
      // Only short keys can name a bound; a long one is never decoded.
      if (depth === 1) key = i - stringStart <= 64 ? memberKey(text.subarray(stringStart, i)) : '';
      continue;
    }
    const ch = text[i] as number;
    if (isJsonSpace(ch)) continue;
    if (items >= 0 && depth === 2 && !itemOpen && ch !== 93 /* ] */ && ch !== 44 /* , */) {
      items += 1;
      itemOpen = true;
      if (items > itemsCap) {
        topArrays.set(key, items);
        return { depth: deepest, topArrays };
      }
    }
    if (ch === 34) {
      inString = true;
      stringStart = i + 1;
    } else if (ch === 123 /* { */ || ch === 91 /* [ */) {
      depth += 1;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > maxDepth) return { depth: deepest, topArrays };
      }
      if (depth === 1) topIsObject = ch === 123;
      if (ch === 91 && depth === 2 && topIsObject) {
        items = 0;
        itemOpen = false;
        const bound = bounds.maxItems?.[key]?.[0];
        itemsCap = bound === undefined ? Number.POSITIVE_INFINITY : scanItemsCap(bound);
      }
    } else if (ch === 125 /* } */ || ch === 93 /* ] */) {
      if (ch === 93 && depth === 2 && items >= 0) {
        topArrays.set(key, items);
        items = -1;
      }
      depth -= 1;
    } else if (ch === 44 /* , */ && depth === 2) itemOpen = false;
  }
  return { depth: deepest, topArrays };
}

const utf8 = new TextDecoder();
/** Bytes past which a body waits for the event loop's next turn before it is scanned. */
const largeBody = 8 * 1024;
const latin1 = new TextDecoder('latin1');

/**
 * A top-level member's key as JSON.parse will see it: `"too\u006cs"` names
 * `tools` too, and must be counted against its bound.
 */
function memberKey(raw: Uint8Array): string {
  if (!raw.includes(92 /* \ */)) return latin1.decode(raw);
  try {
    return JSON.parse(`"${utf8.decode(raw)}"`) as string;
  } catch {
    return ''; // not a JSON string: JSON.parse refuses the body anyway
  }
}
const isJsonSpace = (ch: number) => ch === 32 || ch === 10 || ch === 13 || ch === 9;

/** How far past its bound an array is still counted, so that a near miss says by how much. */
export const scanItemsCap = (max: number): number => 10 * max;

/**
 * An identifier the caller names (capability, instance id, …): bounded
 * (limits.maxIdentifierLength) and free of NUL, so that it can never fail a
 * statement shared with other callers. `undefined` passes through.
 */
export function identifier<T extends string | undefined>(value: T, name: string): T {
  if (value === undefined) return value;
  if (value.length > limits.maxIdentifierLength) {
    throw new ApiError('bad_request', `${name} must be at most ${limits.maxIdentifierLength} characters`);
  }
  return noNul(value, name) as T;
}

/** A required, non-blank string field (trimmed), else `<name> is required`. */
export function required(value: string | null | undefined, name: string): string {
  const v = value?.trim();
  if (!v) throw new ApiError('bad_request', `${name} is required`);
  return v;
}

/** PostgreSQL text cannot hold NUL; refuse it up front rather than fail in the database. */
export function noNul(value: string, name: string): string {
  if (value.includes('\u0000')) throw new ApiError('bad_request', `${name} must not contain NUL characters`);
  return value;
}

/** An integer query parameter; `undefined` when absent. */
export function intParam(c: Context, name: string): number | undefined {
  const raw = c.req.query(name);
  if (raw === undefined || raw === '') return undefined;
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(Number(raw))) {
    throw new ApiError('bad_request', `Invalid format for parameter ${name}: not an integer: "${raw}"`);
  }
  return Number(raw);
}

/** A comma-separated list, tokens trimmed and empty ones dropped. */
export const csv = (raw: string | undefined): string[] =>
  (raw ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);

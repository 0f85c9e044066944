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
  options: { optional?: boolean } = {},
): Promise<z.infer<T>> {
  const text = await c.req.text();
  if (options.optional && text.trim() === '') return schema.parse({});
  let value: unknown;
  try {
    value = JSON.parse(text);
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

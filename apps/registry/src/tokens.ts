import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * Bearer tokens of the registry. Three roles, each optional and separate:
 * `admin` (operator routes), `agent` (what an agent does: register,
 * heartbeat, claim, complete, fail, release, leases, signals, events) and
 * `client` (submit, read, cancel, answer input). Each role holds a list so
 * that a token can be rotated without downtime: accept old and new, move the
 * callers, drop the old.
 */
export interface TokenSets {
  admin: readonly string[];
  agent: readonly string[];
  client: readonly string[];
}

export type Role = keyof TokenSets;

/** Shortest token accepted: a short secret is a guessable one. */
export const minTokenLength = 8;

/** Tokens of a flag or environment value: comma-separated, blanks ignored. */
export function tokenList(raw: string): { ok: true; value: string[] } | { ok: false; problem: string } {
  const tokens = raw
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  return checked(tokens, 'tokens');
}

/**
 * Tokens of a file: one per line; blank lines and lines starting with `#`
 * ignored. A file keeps secrets out of `ps` and out of the environment of
 * child processes (a Kubernetes Secret mounted as a volume, a systemd credential).
 */
export function tokenFile(path: string): { ok: true; value: string[] } | { ok: false; problem: string } {
  let text: string;
  try {
    text = readFileSync(path.trim(), 'utf8');
  } catch (err) {
    return { ok: false, problem: `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}` };
  }
  const tokens = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  return checked(tokens, `tokens in ${path}`);
}

function checked(tokens: string[], what: string) {
  if (tokens.length === 0) return { ok: false as const, problem: `no ${what} given` };
  const short = tokens.find((t) => t.length < minTokenLength);
  if (short !== undefined) {
    return { ok: false as const, problem: `every token must be at least ${minTokenLength} characters` };
  }
  // Tokens travel in an HTTP header: printable ASCII, no spaces.
  if (tokens.some((t) => !/^[\x21-\x7e]+$/.test(t))) {
    return { ok: false as const, problem: 'tokens must be printable ASCII without spaces' };
  }
  return { ok: true as const, value: tokens };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * A matcher for one set of tokens. Both sides are hashed first, so the
 * comparison takes the same time whatever the length or the content of what
 * the caller sent, and every configured token is compared (no early exit).
 */
export function tokenMatcher(tokens: readonly string[]): (authorization: string | undefined) => boolean {
  const wanted = tokens.map(digest);
  return (authorization) => {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
    const given = digest(match?.[1] ?? '');
    let found = false;
    for (const w of wanted) found = timingSafeEqual(given, w) || found;
    return found && match !== null;
  };
}

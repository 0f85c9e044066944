import type { ReplicaSchemaVerdict } from '../upgrade/compat.ts';

// What a check finds, shared by `meshctl doctor` and `meshctl upgrade verify`.

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** One thing found wrong, with what to run (`fix`) or do (`hint`) about it. */
export interface Problem {
  subject: string;
  message: string;
  /** A command that fixes it, to copy and run. */
  fix: string | null;
  /** What to do when no single command does. */
  hint: string | null;
}

export interface CheckResult {
  name: string;
  title: string;
  status: CheckStatus;
  summary: string;
  problems: Problem[];
  /** What a check found beyond its problems (the schema check: a verdict per live replica). */
  details?: { replicas?: ReplicaSchemaVerdict[] };
}

export const ok = (name: string, title: string, summary: string): CheckResult => ({
  name,
  title,
  status: 'ok',
  summary,
  problems: [],
});

export const skip = (name: string, title: string, summary: string): CheckResult => ({
  name,
  title,
  status: 'skip',
  summary,
  problems: [],
});

export const problem = (
  subject: string,
  message: string,
  fix: string | null = null,
  hint: string | null = null,
): Problem => ({
  subject,
  message,
  fix,
  hint,
});

export const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

// What the `job` subcommands share: the <id> positional, meshctl 3.7.1's
// wording for unexpected answers, reading one job, and how values are shown.

import type { Job } from '@mesh/protocol';
import type { Argv } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { CliError } from '../../cli/errors.ts';
import type { HttpResponse, RegistryHttp } from '../../cli/http.ts';

export interface IdArgs extends GlobalArgs {
  id: string;
}

export const idPositional = <T>(y: Argv<T>) =>
  y.positional('id', { type: 'string', demandOption: true, describe: 'job id, or a prefix of one' }) as Argv<
    T & { id: string }
  >;

/** meshctl 3.7.1's wording for unexpected statuses. */
export const unexpected = (res: HttpResponse) =>
  new CliError(
    `registry returned status ${res.status}: ${res.text.trim()}`,
    1,
    res.status === 401
      ? 'Hint: this registry requires a token on its main port: --token, --token-file, MESH_TOKEN or MESH_TOKEN_FILE.'
      : undefined,
  );

/** The `error` of a JSON error body, else the body's text. */
export function errorMessage(res: HttpResponse): string {
  try {
    return (JSON.parse(res.text) as { error?: string }).error ?? res.text.trim();
  } catch {
    return res.text.trim();
  }
}

export async function getJob(http: RegistryHttp, id: string): Promise<{ job: Job; res: HttpResponse }> {
  const res = await http.get(`/jobs/${encodeURIComponent(id)}`);
  if (res.status === 404) throw new CliError(`job not found: ${id}`);
  if (res.status !== 200) throw unexpected(res);
  return { job: res.json<Job>(), res };
}

export const oneLine = (v: unknown, max = 60) => {
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  if (text === undefined) return '-';
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
};

export const percent = (p: number | null) => (p === null || p === undefined ? '' : `${Math.round(p * 100)}%`);

import type { ListJobsResponse } from '@mesh/protocol';
import { CliError } from '../../cli/errors.ts';
import type { RegistryHttp } from '../../cli/http.ts';

const fullId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** How far back a prefix is looked for: the newest jobs, 200 per page. */
const maxPages = 25;

/**
 * A job id, or a prefix of one (as agents take prefixes): a full id is used
 * as it is; a prefix is matched, case-insensitively, against the newest
 * 5,000 jobs (`GET /jobs`, which may need the admin token). Exactly one match
 * or a `CliError`: not found, or ambiguous with the candidates listed.
 */
export async function resolveJobId(http: RegistryHttp, idOrPrefix: string): Promise<string> {
  const query = idOrPrefix.trim().toLowerCase();
  if (fullId.test(query) || query === '') return idOrPrefix;
  const matches: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const res = await http.get('/jobs', { query: { limit: 200, cursor: cursor ?? undefined } });
    if (res.status === 401) {
      throw new CliError(
        `job ${idOrPrefix}: a prefix is resolved by listing jobs, which needs the admin token here`,
        1,
        'Hint: give the full job id, or --admin-token / MESH_ADMIN_TOKEN.',
      );
    }
    if (res.status !== 200) throw new CliError(`registry returned status ${res.status}: ${res.text.trim()}`);
    const page = res.json<ListJobsResponse>();
    for (const j of page.jobs ?? []) if (j.id.toLowerCase().startsWith(query)) matches.push(j.id);
    cursor = page.next_cursor ?? null;
    pages += 1;
  } while (cursor && pages < maxPages && matches.length < 2);
  if (matches.length === 1) return matches[0] as string;
  if (matches.length === 0) {
    throw new CliError(
      `job not found: ${idOrPrefix}${cursor ? ` (no id starts with it among the newest ${pages * 200} jobs)` : ''}`,
    );
  }
  throw new CliError(`"${idOrPrefix}" is ambiguous: ${matches.join(', ')}${cursor ? ', …' : ''}`);
}

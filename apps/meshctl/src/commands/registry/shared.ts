// What the `registry` subcommands share: the /admin/drain call, the `--all`
// flag, and how a replica's state is shown.

import type { DrainStatus, ReplicaInfo } from '@mesh/protocol';
import type { Argv } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { adminError } from '../../cli/fleet.ts';
import type { RegistryHttp } from '../../cli/http.ts';
import { colors, formatAge } from '../../cli/output.ts';

/** `GET`/`POST`/`DELETE /admin/drain` on one replica (`base`) or the one --registry-url reaches. */
export async function drainCall(http: RegistryHttp, method: 'GET' | 'POST' | 'DELETE', base?: string) {
  const res = await http.request(method, '/admin/drain', { admin: true, base });
  if (res.status !== 200) throw adminError(res);
  return { body: res.json<DrainStatus>(), res };
}

export const stateOf = (r: ReplicaInfo) => (r.live ? 'live' : r.stopped_at ? 'stopped' : 'stale');
export const colourState = (s: string) =>
  s === 'live' ? colors.green(s) : s === 'stale' ? colors.red(s) : colors.dim(s);
export const shortBoot = (b: string | undefined) => (b ? b.slice(0, 8) : '-');
export const since = (iso: string | null | undefined) =>
  iso ? formatAge(Date.now() - Date.parse(iso)) : '-';

export interface AllArgs extends GlobalArgs {
  all?: boolean;
}

export const allOption = <T>(y: Argv<T>, what: string) =>
  y.option('all', {
    type: 'boolean',
    describe: `${what} every replica of the fleet (discovered from the registry)`,
  });

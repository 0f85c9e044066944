import type { ReplicaInfo, ReplicasResponse } from '@mesh/protocol';
import { CliError } from './errors.ts';
import type { HttpResponse, RegistryHttp } from './http.ts';

/** Where a replica's admin routes are: its admin listener if it has one. */
export const replicaBase = (r: ReplicaInfo): string | null => r.admin_url ?? r.main_url;

/** meshctl 3.7.1's message for a non-200 from an admin route (404 adds the admin-port hint). */
export function adminError(res: HttpResponse): CliError {
  if (res.status === 404) {
    return new CliError(
      `registry returned status 404: ${res.text.trim()}`,
      1,
      `Hint: the admin routes may be on a separate admin port; use --admin-url http://<host>:<admin-port> (or --registry-url for meshctl 3.7.1).`,
    );
  }
  if (res.status === 401) {
    const withheld = res.tokenWithheld
      ? '; no token sent to this URL from the fleet table (--trust-fleet-urls)'
      : '';
    return new CliError(
      `registry returned status 401: ${res.text.trim()} (${res.url})${withheld}`,
      1,
      res.tokenWithheld
        ? `Hint: ${new URL(res.url).origin} was read from the fleet table, and meshctl sends tokens only to the URLs you gave: pass --trust-fleet-urls (or MESH_TRUST_FLEET_URLS=1) if you trust them, or give that replica's URL with --admin-url.`
        : 'Hint: this registry requires an admin token: --admin-token, --admin-token-file, MESH_ADMIN_TOKEN or MESH_ADMIN_TOKEN_FILE.',
    );
  }
  return new CliError(`registry returned status ${res.status}: ${res.text.trim()} (${res.url})`);
}

/**
 * The fleet as the registry records it. Fails plainly against a registry that
 * has no replica registry (MCP Mesh 3.7).
 */
export async function fetchFleet(http: RegistryHttp): Promise<ReplicasResponse> {
  const res = await http.get('/admin/replicas', { admin: true });
  if (res.status === 404) {
    const health = await http.get('/health').catch(() => undefined);
    const ours = health?.status === 200 && Array.isArray(health.json<{ features?: unknown }>().features);
    if (!ours) {
      throw new CliError(
        `the registry at ${http.url} lacks replica discovery (GET /admin/replicas): it is not a mesh-registry (MCP Mesh 3.7?)`,
        1,
        'Drain each replica by address instead: meshctl registry drain --wait --registry-url http://<replica>:<port>',
      );
    }
    throw adminError(res);
  }
  if (res.status !== 200) throw adminError(res);
  return res.json<ReplicasResponse>();
}

/**
 * The connection flags that address one replica, as every command meshctl
 * prints and every doc spells them: its main URL, and its admin URL when it
 * has one of its own (docs/meshctl.md, "Addressing a replica").
 */
export function replicaFlags(r: { main_url?: string | null; admin_url?: string | null }): string {
  if (r.main_url && r.admin_url && r.admin_url !== r.main_url) {
    return ` --registry-url ${r.main_url} --admin-url ${r.admin_url}`;
  }
  const only = r.main_url ?? r.admin_url;
  return only ? ` --registry-url ${only}` : '';
}

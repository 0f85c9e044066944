// The checks of the registry and its fleet: reachable and ready, replicas on
// one version, drain state consistent, no stale replica.

import type { ReplicaInfo } from '@mesh/protocol';
import { replicaBase } from '../cli/fleet.ts';
import { formatAge } from '../cli/output.ts';
import { type DoctorOptions, type Facts, live } from './facts.ts';
import { type CheckResult, ok, plural, problem, skip } from './result.ts';

/** Numeric-aware version order (`0.10.0` after `0.9.1`); unparsable parts compare as text. */
function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/);
  const pb = b.split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const nx = Number(x);
    const ny = Number(y);
    const c =
      Number.isFinite(nx) && Number.isFinite(ny) && x !== '' && y !== '' ? nx - ny : x.localeCompare(y);
    if (c !== 0) return c;
  }
  return 0;
}

export function registryCheck(f: Facts, o: DoctorOptions): CheckResult {
  const title = 'registry reachable';
  if (!f.health) {
    return {
      name: 'registry',
      title,
      status: 'fail',
      summary: `cannot reach ${f.url}`,
      problems: [
        problem(
          f.url,
          f.healthError ?? 'no answer',
          null,
          'Start the registry, or point --registry-url (MESH_REGISTRY_URL) at a running replica.',
        ),
      ],
    };
  }
  const h = f.health.body;
  if (!f.ours) {
    return ok(
      'registry',
      title,
      `${f.url} answers (version ${h.version ?? '?'}; no replica identity: MCP Mesh 3.7?)`,
    );
  }
  const who = `${f.url} answers: mesh-registry ${h.version}, replica ${h.replica_id}, schema ${h.schema_version}`;
  if (!f.ready) return ok('registry', title, `${who} (no /ready answer)`);
  if (f.ready.status === 'ready') return ok('registry', title, `${who}, ready`);
  const c = f.ready.checks ?? {};
  // A breaking migration applied under it (DESIGN.md §4.8): the replica is up and
  // answers, and the schema check judges (and fails) it with its fix.
  if (c.schema === 'incompatible' && o.databaseUrl && f.schema && c.database === 'ok')
    return ok(
      'registry',
      title,
      `${who}; not ready: its schema is incompatible (see schema compatibility below)`,
    );
  const why =
    c.database !== 'ok'
      ? 'it cannot reach its database'
      : c.migrations !== 'done'
        ? 'its migrations are not done'
        : c.lifecycle !== 'running'
          ? 'it is shutting down'
          : c.schema === 'incompatible'
            ? `its schema is incompatible: ${c.reason ?? 'a breaking migration was applied under it'}`
            : 'it is not ready';
  return {
    name: 'registry',
    title,
    status: 'fail',
    summary: `${who}, but not ready: ${why}`,
    problems: [
      problem(
        h.replica_id ?? f.url,
        `GET /ready: ${JSON.stringify(c)}`,
        null,
        c.database !== 'ok'
          ? "Check the replica's DATABASE_URL and that PostgreSQL is up."
          : c.schema === 'incompatible'
            ? 'Replace it with a release that runs on this schema (meshctl upgrade check shows which).'
            : 'Look at its logs; restart it if it does not become ready.',
      ),
    ],
  };
}

export function replicasCheck(f: Facts): CheckResult {
  const name = 'replicas';
  const title = 'replicas agree on version and schema';
  if (!f.fleet) return skip(name, title, f.fleetMissing);
  const reps = live(f.fleet);
  if (reps.length === 0) return ok(name, title, 'no live replica recorded');
  const key = (r: ReplicaInfo) => `${r.version} (schema ${r.schema_version})`;
  const groups = new Map<string, ReplicaInfo[]>();
  for (const r of reps) groups.set(key(r), [...(groups.get(key(r)) ?? []), r]);
  if (groups.size === 1) {
    return ok(
      name,
      title,
      `${reps.length === 1 ? '1 live replica' : `${reps.length} live replicas, all`} on version ${key(reps[0] as ReplicaInfo)}`,
    );
  }
  const newest = [...reps].sort(
    (a, b) => b.schema_version - a.schema_version || compareVersions(b.version, a.version),
  )[0] as ReplicaInfo;
  return {
    name,
    title,
    status: 'fail',
    summary: `live replicas disagree: ${[...groups.entries()].map(([k, rs]) => `${rs.map((r) => r.replica_id).join(', ')} on ${k}`).join('; ')}`,
    problems: reps
      .filter((r) => key(r) !== key(newest))
      .map((r) => {
        const base = replicaBase(r);
        return problem(
          r.replica_id,
          `runs ${key(r)}; the newest in the fleet is ${key(newest)} (a rolling upgrade not finished?)`,
          base ? `meshctl registry drain --registry-url ${base} --wait` : null,
          `then restart ${r.replica_id} on ${newest.version}`,
        );
      }),
  };
}

export function drainCheck(f: Facts, o: DoctorOptions): CheckResult {
  const name = 'drain';
  const title = 'drain state consistent';
  if (!f.fleet) return skip(name, title, f.fleetMissing);
  const reps = live(f.fleet);
  const draining = reps.filter((r) => r.draining);
  const serving = reps.filter((r) => !r.draining);
  const ids = (rs: ReplicaInfo[]) => rs.map((r) => r.replica_id).join(', ');
  if (f.fleet.fleet_draining) {
    if (serving.length === 0) {
      return ok(
        name,
        title,
        `fleet drain in force since ${f.fleet.fleet_draining_since ?? '?'}: all ${reps.length} live replica(s) draining (lift it with meshctl registry resume --all)`,
      );
    }
    return {
      name,
      title,
      status: 'fail',
      summary: `fleet drain in force but ${ids(serving)} still hand(s) out claims`,
      problems: serving.map((r) =>
        problem(
          r.replica_id,
          'not draining although the fleet drain is in force',
          `meshctl registry drain --all${o.connectionFlags}`,
        ),
      ),
    };
  }
  if (draining.length === 0)
    return ok(name, title, `no replica draining (${plural(reps.length, 'live replica')})`);
  if (serving.length === 0) {
    return ok(
      name,
      title,
      `${reps.length === 1 ? 'the only live replica is' : `all ${reps.length} live replicas are`} draining (no fleet drain): no claims are handed out`,
    );
  }
  return {
    name,
    title,
    status: 'fail',
    summary: `mixed: ${ids(draining)} draining, ${ids(serving)} serving, and no fleet drain`,
    problems: [
      problem(
        ids(draining),
        'draining while the rest of the fleet serves (left over from an upgrade?)',
        `meshctl registry resume --all${o.connectionFlags}`,
        `or, to drain everything: meshctl registry drain --all${o.connectionFlags}`,
      ),
    ],
  };
}

export function staleCheck(f: Facts, o: DoctorOptions): CheckResult {
  const name = 'stale-replicas';
  const title = 'stale replicas';
  if (!f.fleet) return skip(name, title, f.fleetMissing);
  const stale = f.fleet.replicas.filter((r) => r.stale);
  const stopped = f.fleet.replicas.filter((r) => r.stopped_at).length;
  const counts = `${live(f.fleet).length} live, ${stopped} stopped`;
  if (stale.length === 0) return ok(name, title, `none (${counts})`);
  return {
    name,
    title,
    status: 'fail',
    summary: `${plural(stale.length, 'replica')} not heard from and never marked stopped (${counts})`,
    problems: stale.map((r) =>
      problem(
        r.replica_id,
        `last seen ${formatAge(Date.now() - Date.parse(r.last_seen_at))} ago${r.main_url ? ` at ${r.main_url}` : ''} (killed, paused or partitioned)`,
        `meshctl registry forget ${r.replica_id}${o.connectionFlags}`,
        'if it is only paused or cut off it comes back by itself; forget it once it is gone',
      ),
    ),
  };
}

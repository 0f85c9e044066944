// `meshctl registry status [--all]`: whether the registry dispatches or
// drains, and its live claims; with --all, every replica of the fleet.

import type { DrainStatus, ReplicaInfo } from '@mesh/protocol';
import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { type Context, run } from '../../cli/context.ts';
import { fetchFleet, replicaBase } from '../../cli/fleet.ts';
import type { RegistryHttp } from '../../cli/http.ts';
import { colors, table } from '../../cli/output.ts';
import { type AllArgs, allOption, colourState, drainCall, shortBoot, since, stateOf } from './shared.ts';

/** `Registry:    …` / `Live claims: N`, meshctl 3.7.1's lines, then ours when present. */
function printDrainStatus(ctx: Context, body: DrainStatus): void {
  ctx.out.line(
    body.draining ? 'Registry:    DRAINING (new claims paused)' : 'Registry:    active (normal dispatch)',
  );
  ctx.out.line(`Live claims: ${body.live_claims}`);
  if (body.replica_id !== undefined) {
    ctx.out.line(
      `Replica:     ${body.replica_id} (version ${body.version ?? '?'}, boot ${shortBoot(body.boot_id)}; ` +
        `${body.live_claims_this_replica ?? '?'} of the live claims handed out here)`,
    );
    if (body.draining_since) ctx.out.line(`Draining:    since ${body.draining_since}`);
    if (body.fleet_draining) ctx.out.line('Fleet drain: in force (lift with: meshctl registry resume --all)');
  }
  const extra = body as { stale?: boolean; live_claims_age_seconds?: number | null };
  if (extra.stale) {
    ctx.out.warn(
      `the registry's database is unavailable: live claims are from its last read, ${extra.live_claims_age_seconds ?? '?'}s ago`,
    );
  }
}

interface FleetStatusRow extends ReplicaInfo {
  drain: DrainStatus | null;
  error: string | null;
}

async function fleetStatus(http: RegistryHttp) {
  const fleet = await fetchFleet(http);
  const rows: FleetStatusRow[] = await Promise.all(
    fleet.replicas.map(async (r) => {
      const base = replicaBase(r);
      if (!r.live || !base) return { ...r, drain: null, error: null };
      try {
        return { ...r, drain: (await drainCall(http, 'GET', base)).body, error: null };
      } catch (err) {
        return { ...r, drain: null, error: (err as Error).message };
      }
    }),
  );
  const liveClaims = rows.find((r) => r.drain)?.drain?.live_claims ?? null;
  return { fleet, rows, liveClaims };
}

export const statusCommand: CommandModule<GlobalArgs, AllArgs> = {
  command: 'status',
  describe: 'Show whether the registry dispatches or drains, and its live claims',
  builder: (y) =>
    allOption(y, 'Show')
      .example('$0 registry status', 'one replica (the one --registry-url reaches)')
      .example('$0 registry status --all', 'every replica: state, drain, claims, version, boot')
      .example('$0 registry status --json', 'the raw /admin/drain body'),
  handler: run<AllArgs>(async (args, ctx) => {
    const http = ctx.registry();
    if (!args.all) {
      const { body, res } = await drainCall(http, 'GET');
      if (ctx.out.json) ctx.out.document(res.text);
      else printDrainStatus(ctx, body);
      return;
    }
    const { fleet, rows, liveClaims } = await fleetStatus(http);
    if (ctx.out.json) {
      ctx.out.printJson({
        fleet_draining: fleet.fleet_draining,
        fleet_draining_since: fleet.fleet_draining_since,
        live_claims: liveClaims,
        replicas: rows,
      });
      return;
    }
    ctx.out.line(
      table(
        ['REPLICA', 'STATE', 'DISPATCH', 'CLAIMED HERE', 'VERSION', 'SCHEMA', 'BOOT', 'LAST SEEN', 'URL'],
        rows.map((r) => [
          r.replica_id,
          colourState(stateOf(r)),
          r.error
            ? colors.red('unreachable')
            : r.drain
              ? r.drain.draining
                ? colors.yellow('DRAINING')
                : 'active'
              : r.draining
                ? 'draining'
                : '-',
          r.drain?.live_claims_this_replica?.toString() ?? '-',
          r.version,
          String(r.schema_version),
          shortBoot(r.boot_id),
          since(r.last_seen_at),
          replicaBase(r) ?? '-',
        ]),
      ),
    );
    ctx.out.line();
    const live = rows.filter((r) => r.live);
    ctx.out.line(
      `${live.length} live replica(s), ${live.filter((r) => r.drain?.draining).length} draining · ` +
        `fleet drain: ${fleet.fleet_draining ? `in force since ${fleet.fleet_draining_since}` : 'off'} · ` +
        `live claims (fleet): ${liveClaims ?? '?'}`,
    );
    for (const r of rows.filter((x) => x.error)) ctx.out.warn(`${r.replica_id}: ${r.error}`);
  }),
};

// `meshctl registry replicas`: the fleet table as the registry records it.

import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { run } from '../../cli/context.ts';
import { fetchFleet } from '../../cli/fleet.ts';
import { colors, table } from '../../cli/output.ts';
import { colourState, shortBoot, since, stateOf } from './shared.ts';

export const replicasCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'replicas',
  describe: 'List the replicas the registry records: live, stale (not heard from) or stopped',
  builder: (y) => y.example('$0 registry replicas', '').example('$0 registry replicas --json', ''),
  handler: run<GlobalArgs>(async (_args, ctx) => {
    const http = ctx.registry();
    const fleet = await fetchFleet(http);
    if (ctx.out.json) {
      ctx.out.printJson(fleet);
      return;
    }
    ctx.out.line(
      table(
        ['REPLICA', 'STATE', 'DRAINING', 'VERSION', 'SCHEMA', 'BOOT', 'UP', 'LAST SEEN', 'URL', 'ADMIN URL'],
        fleet.replicas.map((r) => [
          r.replica_id,
          colourState(stateOf(r)),
          r.draining ? colors.yellow('yes') : 'no',
          r.version,
          String(r.schema_version),
          shortBoot(r.boot_id),
          r.live ? since(r.started_at) : '-',
          since(r.last_seen_at),
          r.main_url ?? '-',
          r.admin_url ?? '-',
        ]),
      ),
    );
    ctx.out.line();
    const count = (s: string) => fleet.replicas.filter((r) => stateOf(r) === s).length;
    ctx.out.line(
      `${fleet.replicas.length} replica(s): ${count('live')} live, ${count('stale')} stale, ${count('stopped')} stopped · fleet drain: ${fleet.fleet_draining ? 'in force' : 'off'}`,
    );
    if (count('stale') > 0) {
      ctx.out.line(
        'Stale replicas were not heard from and never stopped cleanly; once gone for good: meshctl registry forget <replica>',
      );
    }
  }),
};

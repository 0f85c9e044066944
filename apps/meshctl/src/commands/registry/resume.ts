// `meshctl registry resume [--all]`: hand out claims again; with --all, on
// every replica, and lift the fleet drain.

import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { run } from '../../cli/context.ts';
import { CliError, UsageError } from '../../cli/errors.ts';
import { adminError, fetchFleet, replicaBase } from '../../cli/fleet.ts';
import { colors } from '../../cli/output.ts';
import { type AllArgs, allOption, drainCall } from './shared.ts';

export const resumeCommand: CommandModule<GlobalArgs, AllArgs> = {
  command: 'resume',
  describe: 'Resume handing out claims (with --all: every replica, and lift the fleet drain)',
  builder: (y) =>
    allOption(y, 'Resume')
      .example('$0 registry resume', 'one replica')
      .example('$0 registry resume --all', 'lift the fleet drain and resume every live replica'),
  handler: run<AllArgs>(async (args, ctx) => {
    const http = ctx.registry();
    if (!args.all) {
      const { body, res } = await drainCall(http, 'DELETE');
      if (ctx.out.json) {
        ctx.out.document(res.text);
        return;
      }
      ctx.out.line('Registry resumed — job dispatch active');
      ctx.out.line(`  Live claims: ${body.live_claims}`);
      if (body.fleet_draining) {
        ctx.out.warn(
          'a fleet drain is in force: this replica keeps draining. Lift it with: meshctl registry resume --all',
        );
      }
      return;
    }
    const fleet = await fetchFleet(http);
    const lifted = await http.delete('/admin/fleet/drain', { admin: true });
    if (lifted.status !== 200) throw adminError(lifted);
    const results: { replica_id: string; draining: boolean | null; error: string | null }[] = [];
    for (const r of fleet.replicas.filter((x) => x.live)) {
      const base = replicaBase(r);
      try {
        if (!base) throw new UsageError('no URL recorded');
        const { body } = await drainCall(http, 'DELETE', base);
        results.push({ replica_id: r.replica_id, draining: body.draining, error: null });
      } catch (err) {
        results.push({ replica_id: r.replica_id, draining: null, error: (err as Error).message });
      }
    }
    if (ctx.out.json)
      ctx.out.printJson({ fleet_draining: false, lifted: fleet.fleet_draining, replicas: results });
    else {
      // Only a persisted fleet drain is "lifted"; in-memory drains are resumed.
      ctx.out.line(
        fleet.fleet_draining
          ? 'Fleet drain lifted — job dispatch active'
          : 'Every replica resumed — job dispatch active (no fleet drain was in force)',
      );
      for (const r of results) {
        ctx.out.line(
          `  ${r.replica_id.padEnd(20)} ${r.error ? colors.red(`failed: ${r.error}`) : r.draining ? 'still draining' : 'active'}`,
        );
      }
    }
    const failed = results.filter((r) => r.error);
    if (failed.length > 0) {
      throw new CliError(
        `could not resume ${failed.map((r) => r.replica_id).join(', ')}`,
        1,
        'Retry: meshctl registry resume --all',
      );
    }
  }),
};

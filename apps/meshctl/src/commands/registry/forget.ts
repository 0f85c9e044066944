// `meshctl registry forget <replica>`: drop a stopped or stale replica from the fleet table.

import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { run } from '../../cli/context.ts';
import { CliError } from '../../cli/errors.ts';
import { adminError, fetchFleet } from '../../cli/fleet.ts';

export const forgetCommand: CommandModule<GlobalArgs, GlobalArgs & { replica: string }> = {
  command: 'forget <replica>',
  describe: 'Remove a stopped or stale replica from the fleet list (a live one is refused)',
  builder: (y) =>
    y
      .positional('replica', { type: 'string', demandOption: true, describe: 'replica id' })
      .example('$0 registry forget registry-b', ''),
  handler: run<GlobalArgs & { replica: string }>(async (args, ctx) => {
    const http = ctx.registry();
    const res = await http.delete(`/admin/replicas/${encodeURIComponent(args.replica)}`, { admin: true });
    if (res.status === 404) {
      // Not our "replica not found": the route is missing (MCP Mesh) or on the admin port.
      if (!res.text.includes('replica not found')) {
        await fetchFleet(http);
        throw adminError(res);
      }
      throw new CliError(
        `replica not found: ${args.replica}`,
        1,
        'List them with: meshctl registry replicas',
      );
    }
    if (res.status === 409)
      throw new CliError(`replica ${args.replica} is live; stop it before forgetting it`);
    if (res.status !== 200) throw adminError(res);
    if (ctx.out.json) ctx.out.document(res.text);
    else ctx.out.line(`Replica ${args.replica} forgotten`);
  }),
};

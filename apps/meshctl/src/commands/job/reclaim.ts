// `meshctl job reclaim <id>`: evict a job's owner and requeue it (an admin action).

import type { ReclaimResponse } from '@mesh/protocol';
import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { run } from '../../cli/context.ts';
import { CliError } from '../../cli/errors.ts';
import { resolveJobId } from './resolve-id.ts';
import { errorMessage, type IdArgs, idPositional, unexpected } from './shared.ts';

export const reclaimCommand: CommandModule<GlobalArgs, IdArgs> = {
  command: 'reclaim <id>',
  describe: "Evict a job's owner and put it back in the queue (an admin action)",
  builder: (y) => idPositional(y).example('$0 job reclaim 7f0c…', ''),
  handler: run<IdArgs>(async (args, ctx) => {
    const http = ctx.registry();
    args.id = await resolveJobId(http, args.id);
    const res = await http.post(`/jobs/${encodeURIComponent(args.id)}/reclaim`, { admin: true });
    if (res.status === 404) {
      if (errorMessage(res).includes('not found')) throw new CliError(`job not found: ${args.id}`);
      throw new CliError(
        `registry returned status 404: ${res.text.trim()}`,
        1,
        'Hint: force reclaim may be on the admin port: --admin-url http://<host>:<admin-port>',
      );
    }
    if (res.status === 401)
      throw new CliError(
        `registry returned status 401: ${errorMessage(res)}`,
        1,
        'Hint: --admin-token or MESH_ADMIN_TOKEN',
      );
    if (res.status === 409)
      throw new CliError(`job ${args.id} is already in a terminal state — nothing to reclaim`);
    if (res.status !== 200) throw unexpected(res);
    const body = res.json<ReclaimResponse>();
    if (ctx.out.json) {
      ctx.out.document(res.text);
      return;
    }
    ctx.out.line(`Job ${args.id} reclaimed`);
    ctx.out.line(`  Evicted owner: ${body.previous_owner_instance_id ?? '(none — was unclaimed)'}`);
    if (body.status === 'failed') {
      ctx.out.line('  Status:        failed (retry budget spent: not re-queued)');
    } else {
      ctx.out.line('  Status:        working (claimable)');
    }
    ctx.out.line(`  Claim epoch:   ${body.claim_epoch} (unchanged; next claim mints the next epoch)`);
  }),
};

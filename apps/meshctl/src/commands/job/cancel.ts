// `meshctl job cancel <id>`: cancel a job; the registry tells its owner.

import type { CancelResponse } from '@mesh/protocol';
import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { run } from '../../cli/context.ts';
import { CliError } from '../../cli/errors.ts';
import { resolveJobId } from './resolve-id.ts';
import { errorMessage, type IdArgs, idPositional, unexpected } from './shared.ts';

export const cancelCommand: CommandModule<GlobalArgs, IdArgs & { reason?: string }> = {
  command: 'cancel <id>',
  describe: 'Cancel a job (its owner is told; a finished job is left as it is)',
  builder: (y) =>
    idPositional(y)
      .option('reason', { type: 'string', describe: 'Why (recorded in the cancelled event)' })
      .example('$0 job cancel 7f0c… --reason "wrong month"', ''),
  handler: run<IdArgs & { reason?: string }>(async (args, ctx) => {
    args.id = await resolveJobId(ctx.registry(), args.id);
    const res = await ctx.registry().post(`/jobs/${encodeURIComponent(args.id)}/cancel`, {
      body: args.reason ? { reason: args.reason } : {},
    });
    if (res.status === 404) throw new CliError(`job not found: ${args.id}`);
    if (res.status === 409)
      throw new CliError(`job ${args.id} already ended — nothing to cancel (${errorMessage(res)})`);
    if (res.status !== 200) throw unexpected(res);
    const body = res.json<CancelResponse>();
    if (ctx.out.json) ctx.out.document(res.text);
    else {
      ctx.out.line(`Job ${args.id} cancelled`);
      ctx.out.line(`  Owner notified: ${body.forwarded_to_instance_id ?? '(none — was unclaimed)'}`);
    }
  }),
};

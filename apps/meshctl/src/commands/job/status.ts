// `meshctl job status <id>`: one job, in meshctl 3.7.1's layout.

import type { Job } from '@mesh/protocol';
import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { type Context, run } from '../../cli/context.ts';
import { unixToIso } from '../../cli/output.ts';
import { resolveJobId } from './resolve-id.ts';
import { getJob, type IdArgs, idPositional, oneLine, percent } from './shared.ts';

/** meshctl 3.7.1's `job status` block (labels padded to 14), then our extra lines. */
function printJob(ctx: Context, j: Job): void {
  const line = (label: string, value: string) => ctx.out.line(`${`${label}:`.padEnd(14)}${value}`);
  line('Job', j.id);
  line('Capability', j.capability);
  line('Status', j.status);
  line('Owner', j.owner_instance_id ?? '(unclaimed)');
  line('Claim epoch', String(j.claim_epoch));
  line('Attempts', `${j.attempt_count} of ${j.max_retries + 1} allowed (max_retries ${j.max_retries})`);
  if (j.progress_message) line('Progress', j.progress_message);
  line('Lease expiry', unixToIso(j.lease_expires_at));
  line('Last beat', unixToIso(j.last_heartbeat_at));
  const cursor = Object.entries(j.recv_cursor ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (cursor.length > 0)
    line('Recv cursor', cursor.map(([k, v]) => `${k === '' ? '(all)' : k}=${v}`).join(' '));
  line('Submitted', `${unixToIso(j.submitted_at)} by ${j.submitted_by}`);
  if (j.error) line('Error', j.error);
  // Ours, after 3.7.1's lines so scripts that parse those keep working.
  if (j.progress !== null && j.progress !== undefined) line('Progress %', percent(j.progress));
  if (j.max_duration) line('Max duration', `${j.max_duration}s`);
  if (j.total_deadline) line('Deadline', unixToIso(j.total_deadline));
  if (j.status === 'completed') line('Result', oneLine(j.result, 200));
}

export const statusCommand: CommandModule<GlobalArgs, IdArgs> = {
  command: 'status <id>',
  describe: 'Show one job: status, owner, claim epoch, attempts, lease',
  builder: (y) =>
    idPositional(y).example('$0 job status 7f0c…', '').example('$0 job status 7f0c… --json', 'the raw job'),
  handler: run<IdArgs>(async (args, ctx) => {
    const { job, res } = await getJob(ctx.registry(), await resolveJobId(ctx.registry(), args.id));
    if (ctx.out.json) ctx.out.document(res.text);
    else printJob(ctx, job);
  }),
};

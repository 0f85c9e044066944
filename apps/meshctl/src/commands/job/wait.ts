// `meshctl job wait <id>`, and the wait `job submit --wait` shares with it.

import { isTerminal, type Job } from '@mesh/protocol';
import type { Argv, CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { type Context, run } from '../../cli/context.ts';
import { CliError } from '../../cli/errors.ts';
import type { RegistryHttp } from '../../cli/http.ts';
import { resolveJobId } from './resolve-id.ts';
import { getJob, type IdArgs, idPositional, percent } from './shared.ts';

interface WaitOpts {
  timeoutS: number;
  pollS: number;
}

/** Polls a job until it ends (printing its progress as it changes); a `CliError` past the timeout. */
export async function waitForJob(ctx: Context, http: RegistryHttp, id: string, opts: WaitOpts): Promise<Job> {
  const started = Date.now();
  let last = '';
  for (;;) {
    const { job } = await getJob(http, id);
    const elapsed = Math.round((Date.now() - started) / 1000);
    if (isTerminal(job.status)) {
      ctx.out.endProgress();
      return job;
    }
    const state = [
      job.status,
      percent(job.progress),
      job.progress_message ?? '',
      job.owner_instance_id ? `on ${job.owner_instance_id}` : 'queued',
    ]
      .filter(Boolean)
      .join(' ');
    if (ctx.out.tty) ctx.out.progress(`${state} · ${elapsed}s`);
    else if (state !== last) ctx.out.progress(state);
    last = state;
    if (opts.timeoutS > 0 && elapsed >= opts.timeoutS) {
      throw new CliError(
        `timed out after ${opts.timeoutS}s; job ${id} is still ${job.status}`,
        1,
        `Keep waiting: meshctl job wait ${id}`,
      );
    }
    await new Promise((r) => setTimeout(r, Math.max(0.2, opts.pollS) * 1000));
  }
}

/** Prints the end of a job; a failed or cancelled job is exit 1. */
export function finish(ctx: Context, job: Job): void {
  if (ctx.out.json) ctx.out.printJson(job);
  else if (job.status === 'completed') {
    ctx.out.line(`Job ${job.id} completed`);
    ctx.out.line(JSON.stringify(job.result, null, 2));
  }
  if (job.status !== 'completed') {
    throw new CliError(`job ${job.id} ${job.status}${job.error ? `: ${job.error}` : ''}`);
  }
}

interface WaitArgs extends IdArgs {
  'wait-timeout': number;
  'poll-interval': number;
}

/** --wait-timeout and --poll-interval, as `job wait` and `job submit` take them. */
export const waitOptions = <T>(y: Argv<T>) =>
  y
    .option('wait-timeout', {
      type: 'number',
      default: 0,
      describe: 'Give up after this many seconds (0 = never)',
    })
    .option('poll-interval', { type: 'number', default: 1, describe: 'Seconds between polls' });

export const waitCommand: CommandModule<GlobalArgs, WaitArgs> = {
  command: 'wait <id>',
  describe: 'Wait until a job ends; print its result (exit 1 if it failed or was cancelled)',
  builder: (y) =>
    waitOptions(idPositional(y))
      .example('$0 job wait 7f0c…', '')
      .example('$0 job wait 7f0c… --wait-timeout 300 --json', ''),
  handler: run<WaitArgs>(async (args, ctx) => {
    const job = await waitForJob(ctx, ctx.registry(), await resolveJobId(ctx.registry(), args.id), {
      timeoutS: args['wait-timeout'],
      pollS: args['poll-interval'],
    });
    finish(ctx, job);
  }),
};

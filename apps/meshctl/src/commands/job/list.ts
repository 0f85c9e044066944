// `meshctl job list`: jobs newest first, paging through the registry.

import { type Job, jobStatuses, type ListJobsResponse } from '@mesh/protocol';
import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { run } from '../../cli/context.ts';
import { CliError, UsageError } from '../../cli/errors.ts';
import { colors, formatAge, table } from '../../cli/output.ts';
import { errorMessage, percent, unexpected } from './shared.ts';

interface ListArgs extends GlobalArgs {
  status?: string[];
  capability?: string;
  owner?: string;
  limit: number;
}

const statusColour = (s: string) =>
  s === 'completed'
    ? colors.green(s)
    : s === 'failed'
      ? colors.red(s)
      : s === 'cancelled'
        ? colors.dim(s)
        : s === 'input_required'
          ? colors.yellow(s)
          : colors.cyan(s);

export const listCommand: CommandModule<GlobalArgs, ListArgs> = {
  command: 'list',
  describe: 'List jobs, newest first',
  builder: (y) =>
    y
      .option('status', {
        type: 'string',
        array: true,
        describe: `Only these statuses (${jobStatuses.join(', ')}); repeat or comma-separate`,
      })
      .option('capability', { type: 'string', describe: 'Only this capability' })
      .option('owner', { type: 'string', describe: 'Only jobs owned by this agent instance' })
      .option('limit', {
        type: 'number',
        default: 50,
        describe: 'At most this many jobs (pages through the registry)',
      })
      .example('$0 job list --status working,input_required', 'what runs now')
      .example('$0 job list --capability report --limit 500 --json', '')
      .check((a) => {
        if (!Number.isInteger(a.limit) || a.limit < 1)
          throw new UsageError('--limit must be a positive integer');
        const statuses = (a.status ?? []).flatMap((s) => String(s).split(',')).filter(Boolean);
        const bad = statuses.filter((s) => !(jobStatuses as readonly string[]).includes(s));
        if (bad.length)
          throw new UsageError(`unknown status ${bad.join(', ')}: use ${jobStatuses.join(', ')}`);
        return true;
      }),
  handler: run<ListArgs>(async (args, ctx) => {
    const http = ctx.registry();
    const statuses = (args.status ?? []).flatMap((s) => String(s).split(',')).filter(Boolean);
    const jobs: Job[] = [];
    let cursor: string | null = null;
    do {
      const res = await http.get('/jobs', {
        query: {
          status: statuses.join(',') || undefined,
          capability: args.capability,
          owner_instance_id: args.owner,
          limit: Math.min(200, args.limit - jobs.length),
          cursor: cursor ?? undefined,
        },
      });
      if (res.status === 401) {
        throw new CliError(
          `registry returned status 401: ${errorMessage(res)}`,
          1,
          'Hint: listing jobs needs the admin token on this registry (--admin-token-file, MESH_ADMIN_TOKEN…), or a client token (--token) where no admin token is set.',
        );
      }
      if (res.status !== 200) throw unexpected(res);
      const page = res.json<ListJobsResponse>();
      jobs.push(...(page.jobs ?? []));
      cursor = page.next_cursor ?? null;
    } while (cursor && jobs.length < args.limit);
    if (ctx.out.json) {
      ctx.out.printJson({ jobs, next_cursor: cursor });
      return;
    }
    if (jobs.length === 0) {
      ctx.out.line('No jobs found');
      return;
    }
    const now = Date.now();
    ctx.out.line(
      table(
        ['ID', 'CAPABILITY', 'STATUS', 'OWNER', 'EPOCH', 'ATTEMPTS', 'PROGRESS', 'AGE'],
        jobs.map((j) => [
          j.id,
          j.capability,
          statusColour(j.status),
          j.owner_instance_id ?? '-',
          String(j.claim_epoch),
          // Attempts made / attempts allowed (max_retries counts retries: 1 = 2 attempts).
          `${j.attempt_count}/${j.max_retries + 1}`,
          [percent(j.progress), j.progress_message ?? ''].filter(Boolean).join(' ') || '-',
          formatAge(now - j.submitted_at * 1000),
        ]),
      ),
    );
    ctx.out.line();
    ctx.out.line(`${jobs.length} job(s)${cursor ? ' — more match (raise --limit)' : ''}`);
  }),
};

// `meshctl job events <id> [--follow]`: a job's events, as a table, or
// followed (long-polled) until the job ends.

import { type EventsResponse, isTerminal } from '@mesh/protocol';
import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { run } from '../../cli/context.ts';
import { CliError } from '../../cli/errors.ts';
import { table, unixToIso } from '../../cli/output.ts';
import { resolveJobId } from './resolve-id.ts';
import { getJob, type IdArgs, idPositional, oneLine, unexpected } from './shared.ts';

interface EventsArgs extends IdArgs {
  type?: string[];
  after: number;
  follow?: boolean;
}

export const eventsCommand: CommandModule<GlobalArgs, EventsArgs> = {
  command: 'events <id>',
  describe: "Show a job's events; --follow keeps printing until the job ends",
  builder: (y) =>
    idPositional(y)
      .option('type', {
        type: 'string',
        array: true,
        describe: 'Only these event types (repeat or comma-separate)',
      })
      .option('after', { type: 'number', default: 0, describe: 'Only events after this sequence number' })
      .option('follow', {
        type: 'boolean',
        alias: 'f',
        describe: 'Long-poll for new events until the job ends',
      })
      .example('$0 job events 7f0c…', '')
      .example('$0 job events 7f0c… --follow --json', 'one JSON event per line'),
  handler: run<EventsArgs>(async (args, ctx) => {
    const http = ctx.registry();
    args.id = await resolveJobId(http, args.id);
    const types = (args.type ?? []).flatMap((t) => String(t).split(',')).filter(Boolean);
    let after = args.after;
    let printedHeader = false;
    const all: EventsResponse['events'] = [];
    for (;;) {
      const res = await http.get(`/jobs/${encodeURIComponent(args.id)}/events`, {
        query: { after, types: types.join(',') || undefined, wait: args.follow ? 25 : undefined, limit: 100 },
        timeoutMs: args.follow ? Math.max(ctx.registry().target.timeoutMs, 35_000) : undefined,
      });
      if (res.status === 404) throw new CliError(`job not found: ${args.id}`);
      if (res.status !== 200) throw unexpected(res);
      const page = res.json<EventsResponse>();
      const events = page.events ?? [];
      after = Math.max(after, page.next_after ?? after);
      if (args.follow) {
        for (const e of events) {
          if (ctx.out.json) ctx.out.document(JSON.stringify(e));
          else {
            if (!printedHeader)
              ctx.out.line(`${'SEQ'.padEnd(5)} ${'TIME'.padEnd(20)} ${'TYPE'.padEnd(16)} PAYLOAD`);
            printedHeader = true;
            ctx.out.line(
              `${String(e.seq).padEnd(5)} ${unixToIso(e.created_at).padEnd(20)} ${e.type.padEnd(16)} ${oneLine(e.payload, 80)}`,
            );
          }
        }
        if (events.length === 0) {
          const { job } = await getJob(http, args.id);
          if (isTerminal(job.status)) return;
        }
        continue;
      }
      all.push(...events);
      if (events.length < 100) break;
    }
    if (ctx.out.json) {
      ctx.out.printJson({ events: all, next_after: after });
      return;
    }
    if (all.length === 0) {
      ctx.out.line('No events');
      return;
    }
    ctx.out.line(
      table(
        ['SEQ', 'TIME', 'TYPE', 'BY', 'PAYLOAD'],
        all.map((e) => [
          String(e.seq),
          unixToIso(e.created_at),
          e.type,
          e.posted_by ?? '-',
          oneLine(e.payload, 80),
        ]),
      ),
    );
  }),
};

import type { Job } from '@mesh/protocol';
import type { Argv, CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { run } from '../../cli/context.ts';
import { CliError, UsageError } from '../../cli/errors.ts';
import { resolveJobId } from './resolve-id.ts';

interface InputArgs extends GlobalArgs {
  id: string;
  answer: string;
  type: string;
  force?: boolean;
}

/**
 * `meshctl job input <id> <json>`: answers a job waiting for input
 * (`input_required`, the question in its `progress_message`) by posting the
 * `user_input` event the SDK's `requestInput()` waits for (the 3.7 wire:
 * `POST /jobs/{id}/events`).
 */
export const inputCommand: CommandModule<GlobalArgs, InputArgs> = {
  command: 'input <id> <answer>',
  describe: 'Answer a job that waits for input (input_required): post its user_input event',
  builder: (y) =>
    (y as Argv<GlobalArgs>)
      .positional('id', { type: 'string', demandOption: true, describe: 'job id, or a prefix' })
      .positional('answer', {
        type: 'string',
        demandOption: true,
        describe: 'the answer, as JSON (a bare word is sent as a JSON string)',
      })
      .option('type', { type: 'string', default: 'user_input', describe: 'Event type to post' })
      .option('force', {
        type: 'boolean',
        describe: 'Post even when the job is not input_required',
      })
      .example('$0 job input 7f0c \'{"approved": true}\'', 'answer the prompt shown by job status')
      .example('$0 job input 7f0c yes', 'sends "yes"') as Argv<InputArgs>,
  handler: run<InputArgs>(async (args, ctx) => {
    const http = ctx.registry();
    const id = await resolveJobId(http, args.id);
    let payload: unknown;
    try {
      payload = JSON.parse(args.answer);
    } catch {
      if (/^[\s{["]/.test(args.answer)) throw new UsageError(`answer is not valid JSON: ${args.answer}`);
      payload = args.answer;
    }
    const read = await http.get(`/jobs/${encodeURIComponent(id)}`);
    if (read.status === 404) throw new CliError(`job not found: ${args.id}`);
    if (read.status !== 200)
      throw new CliError(`registry returned status ${read.status}: ${read.text.trim()}`);
    const job = read.json<Job>();
    if (job.status !== 'input_required' && !args.force) {
      throw new CliError(
        `job ${id} is ${job.status}, not waiting for input`,
        1,
        'Hint: --force posts the event anyway (a handler may be about to ask).',
      );
    }
    const res = await http.post(`/jobs/${encodeURIComponent(id)}/events`, {
      body: { type: args.type, payload },
    });
    if (res.status === 409) throw new CliError(`job ${id} already ended — no input taken`);
    if (res.status !== 200 && res.status !== 201)
      throw new CliError(`registry returned status ${res.status}: ${res.text.trim()}`);
    if (ctx.out.json) ctx.out.line(res.text.trim());
    else {
      ctx.out.line(`Input sent to job ${id}`);
      if (job.progress_message) ctx.out.line(`  Question: ${job.progress_message}`);
      ctx.out.line(`  Answer:   ${JSON.stringify(payload)}`);
    }
  }),
};

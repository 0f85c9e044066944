// `meshctl job submit <capability>`: create a job (idempotently), and with
// --wait, wait for it like `job wait`.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { type CreateJobResponse, formatIdempotencyKey, headers, parseIdempotencyKey } from '@mesh/protocol';
import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { run } from '../../cli/context.ts';
import { CliError, UsageError } from '../../cli/errors.ts';
import { errorMessage, unexpected } from './shared.ts';
import { finish, waitForJob, waitOptions } from './wait.ts';

interface SubmitArgs extends GlobalArgs {
  capability: string;
  payload?: string;
  'payload-file'?: string;
  'submitted-by'?: string;
  'max-retries'?: number;
  'max-duration'?: number;
  deadline?: number;
  owner?: string;
  'idempotency-key'?: string;
  wait?: boolean;
  'wait-timeout': number;
  'poll-interval': number;
}

function readPayload(args: SubmitArgs): Record<string, unknown> {
  if (args.payload !== undefined && args['payload-file'] !== undefined) {
    throw new UsageError('give --payload or --payload-file, not both');
  }
  let text = '{}';
  let source = '--payload';
  if (args.payload !== undefined) text = args.payload;
  else if (args['payload-file'] !== undefined) {
    source = args['payload-file'];
    try {
      text = readFileSync(args['payload-file'] === '-' ? 0 : args['payload-file'], 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${source}: ${(err as Error).message}`);
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${source} is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UsageError(`${source} must be a JSON object (the registry stores payloads as objects)`);
  }
  return value as Record<string, unknown>;
}

export const submitCommand: CommandModule<GlobalArgs, SubmitArgs> = {
  command: 'submit <capability>',
  describe: 'Submit a job for agents providing <capability>',
  builder: (y) =>
    waitOptions(
      y
        .positional('capability', { type: 'string', demandOption: true, describe: 'capability to run' })
        .option('payload', { type: 'string', describe: 'Payload, a JSON object (default {})' })
        .option('payload-file', { type: 'string', describe: 'Read the payload from a file (- for stdin)' })
        .option('submitted-by', { type: 'string', describe: 'Submitter name (default meshctl@<hostname>)' })
        .option('max-retries', {
          type: 'number',
          describe:
            'Retries after a failed first attempt: 0 = one attempt, 1 = up to 2 (the registry default), n = up to n+1',
        })
        .option('max-duration', { type: 'number', describe: 'Lease window per attempt, seconds' })
        .option('deadline', { type: 'number', describe: 'Total deadline, seconds from now' })
        .option('owner', { type: 'string', describe: 'Push mode: hand the job to this agent instance' })
        .option('idempotency-key', {
          type: 'string',
          describe:
            'Idempotency-Key: resubmitting with the same key gives the job already created (default a random one; printed with --json)',
        })
        .option('wait', { type: 'boolean', describe: 'Wait for the job to end and print its result' }),
    )
      .example(`$0 job submit report --payload '{"month":"2026-10"}'`, '')
      .example('$0 job submit report --payload-file req.json --wait', '')
      .example('$0 job submit report --idempotency-key report-2026-10', 'safe to run again')
      .check((a) => {
        const key = a['idempotency-key'];
        if (key !== undefined) {
          const parsed = parseIdempotencyKey(key);
          if ('error' in parsed) throw new UsageError(`--idempotency-key: ${parsed.error}`);
        }
        for (const k of ['max-retries', 'max-duration', 'deadline'] as const) {
          const v = a[k];
          if (v !== undefined && (!Number.isInteger(v) || v < 0))
            throw new UsageError(`--${k} must be a non-negative integer`);
        }
        return true;
      }),
  handler: run<SubmitArgs>(async (args, ctx) => {
    const payload = readPayload(args);
    const http = ctx.registry();
    const idempotencyKey = args['idempotency-key'] ?? randomUUID();
    const res = await http.post('/jobs', {
      // Registries since 0.2.0 answer a resubmission with the same key with the
      // job already created; older ones ignore the header.
      headers: { [headers.idempotencyKey]: formatIdempotencyKey(idempotencyKey) },
      body: {
        capability: args.capability,
        submitted_by: args['submitted-by'] ?? `meshctl@${hostname()}`,
        submitted_payload: payload,
        max_retries: args['max-retries'],
        max_duration: args['max-duration'],
        total_deadline:
          args.deadline !== undefined ? Math.floor(Date.now() / 1000) + args.deadline : undefined,
        owner_instance_id: args.owner,
      },
    });
    if (res.status === 400) throw new UsageError(`the registry refused the job: ${errorMessage(res)}`);
    if (res.status === 422) {
      throw new CliError(
        `--idempotency-key ${idempotencyKey} was already used for a different job: ${errorMessage(res)}`,
        1,
        'Use a new key for a new job, or resubmit exactly the job first submitted with it.',
      );
    }
    if (res.status !== 201 && res.status !== 200) throw unexpected(res);
    const created = res.json<CreateJobResponse>();
    if (!args.wait) {
      // The key rides along (ours) so a script can resubmit after a lost answer.
      if (ctx.out.json)
        ctx.out.document(
          JSON.stringify({ ...res.json<Record<string, unknown>>(), idempotency_key: idempotencyKey }),
        );
      else
        ctx.out.line(
          `Job ${created.id} submitted (${args.capability}${created.owner_instance_id ? `, pushed to ${created.owner_instance_id}` : ''})`,
        );
      return;
    }
    if (!ctx.out.json) ctx.out.line(`Job ${created.id} submitted; waiting…`);
    const job = await waitForJob(ctx, http, created.id, {
      timeoutS: args['wait-timeout'],
      pollS: args['poll-interval'],
    });
    finish(ctx, job);
  }),
};

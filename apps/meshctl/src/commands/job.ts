import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import {
  type CancelResponse,
  type CreateJobResponse,
  type EventsResponse,
  formatIdempotencyKey,
  headers,
  isTerminal,
  type Job,
  jobStatuses,
  type ListJobsResponse,
  parseIdempotencyKey,
  type ReclaimResponse,
} from '@mesh/protocol';
import type { Argv, CommandModule } from 'yargs';
import type { GlobalArgs } from '../cli/connection.ts';
import { type Context, run } from '../cli/context.ts';
import { CliError, UsageError } from '../cli/errors.ts';
import type { HttpResponse, RegistryHttp } from '../cli/http.ts';
import { colors, formatAge, table, unixToIso } from '../cli/output.ts';
import { resolveJobId } from './job-id.ts';
import { inputCommand } from './job-input.ts';

interface IdArgs extends GlobalArgs {
  id: string;
}

const idPositional = <T>(y: Argv<T>) =>
  y.positional('id', { type: 'string', demandOption: true, describe: 'job id, or a prefix of one' }) as Argv<
    T & { id: string }
  >;

/** meshctl 3.7.1's wording for unexpected statuses. */
const unexpected = (res: HttpResponse) =>
  new CliError(
    `registry returned status ${res.status}: ${res.text.trim()}`,
    1,
    res.status === 401
      ? 'Hint: this registry requires a token on its main port: --token, --token-file, MESH_TOKEN or MESH_TOKEN_FILE.'
      : undefined,
  );

function errorMessage(res: HttpResponse): string {
  try {
    return (JSON.parse(res.text) as { error?: string }).error ?? res.text.trim();
  } catch {
    return res.text.trim();
  }
}

async function getJob(http: RegistryHttp, id: string): Promise<{ job: Job; res: HttpResponse }> {
  const res = await http.get(`/jobs/${encodeURIComponent(id)}`);
  if (res.status === 404) throw new CliError(`job not found: ${id}`);
  if (res.status !== 200) throw unexpected(res);
  return { job: res.json<Job>(), res };
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

const oneLine = (v: unknown, max = 60) => {
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  if (text === undefined) return '-';
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
};

const percent = (p: number | null) => (p === null || p === undefined ? '' : `${Math.round(p * 100)}%`);

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

// ─── job status ──────────────────────────────────────────────────────────────

const statusCommand: CommandModule<GlobalArgs, IdArgs> = {
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

// ─── job list ────────────────────────────────────────────────────────────────

interface ListArgs extends GlobalArgs {
  status?: string[];
  capability?: string;
  owner?: string;
  limit: number;
}

const listCommand: CommandModule<GlobalArgs, ListArgs> = {
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

// ─── job wait (also used by submit --wait) ───────────────────────────────────

interface WaitOpts {
  timeoutS: number;
  pollS: number;
}

async function waitForJob(ctx: Context, http: RegistryHttp, id: string, opts: WaitOpts): Promise<Job> {
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
function finish(ctx: Context, job: Job): void {
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

const waitOptions = <T>(y: Argv<T>) =>
  y
    .option('wait-timeout', {
      type: 'number',
      default: 0,
      describe: 'Give up after this many seconds (0 = never)',
    })
    .option('poll-interval', { type: 'number', default: 1, describe: 'Seconds between polls' });

const waitCommand: CommandModule<GlobalArgs, WaitArgs> = {
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

// ─── job submit ──────────────────────────────────────────────────────────────

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

const submitCommand: CommandModule<GlobalArgs, SubmitArgs> = {
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

// ─── job cancel ──────────────────────────────────────────────────────────────

const cancelCommand: CommandModule<GlobalArgs, IdArgs & { reason?: string }> = {
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

// ─── job reclaim ─────────────────────────────────────────────────────────────

const reclaimCommand: CommandModule<GlobalArgs, IdArgs> = {
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

// ─── job events ──────────────────────────────────────────────────────────────

interface EventsArgs extends IdArgs {
  type?: string[];
  after: number;
  follow?: boolean;
}

const eventsCommand: CommandModule<GlobalArgs, EventsArgs> = {
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

export const jobCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'job',
  describe: 'Jobs: status, list, submit, cancel, reclaim, events, wait, input',
  builder: (y) =>
    y
      .command(statusCommand)
      .command(listCommand)
      .command(submitCommand)
      .command(cancelCommand)
      .command(reclaimCommand)
      .command(eventsCommand)
      .command(waitCommand)
      .command(inputCommand)
      .demandCommand(1, 'name a job command'),
  handler: () => {
    throw new UsageError('name a job command');
  },
};

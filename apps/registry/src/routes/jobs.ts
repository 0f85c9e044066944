import {
  type BatchResponse,
  batchRequest,
  type CancelResponse,
  type ClaimedJob,
  type ClaimResponse,
  type CreateJobResponse,
  cancelRequest,
  claimRequest,
  createJobRequest,
  type EventsResponse,
  features,
  headers,
  jobStatuses,
  type ListJobsResponse,
  limits,
  parseIdempotencyKey,
  postEventRequest,
  type RenewLeasesResponse,
  releaseRequest,
  renewLeasesRequest,
} from '@mesh/protocol';
import { type Context, Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { ApiError } from '../errors.ts';
import { isUuid, jobNotFound } from '../services/jobs.ts';
import { csv, identifier, intParam, noNul, readJson, required } from './input.ts';

// Largest total_deadline a timestamptz holds comfortably (9999-12-31).
const maxUnixSeconds = 253_402_300_799;

const encodeCursor = (micros: bigint, id: string) =>
  Buffer.from(`${micros * 1000n}:${id}`).toString('base64url');

function decodeCursor(cursor: string): { micros: bigint; id: string } {
  const bad = () => new ApiError('bad_request', 'ListJobs: invalid cursor: malformed cursor payload');
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = /^(\d{1,20}):(.+)$/.exec(text);
  if (!match || !isUuid(match[2] as string)) throw bad();
  return { micros: BigInt(match[1] as string) / 1000n, id: match[2] as string };
}

/**
 * `GET /jobs`: filters and keyset paging, newest first. Also the dashboard's
 * job list (routes/dashboard.ts), so both read the same query the same way.
 */
export async function listJobs(c: Context<AppEnv>) {
  const statuses = csv(c.req.query('status'));
  for (const s of statuses) {
    if (!(jobStatuses as readonly string[]).includes(s)) {
      throw new ApiError('bad_request', `invalid status "${s}": must be one of ${jobStatuses.join(',')}`);
    }
  }
  const limitRaw = c.req.query('limit');
  let limit = 50;
  if (limitRaw !== undefined) {
    const n = /^-?\d+$/.test(limitRaw.trim()) ? Number(limitRaw) : Number.NaN;
    if (!Number.isInteger(n) || n < 1 || n > 200) {
      throw new ApiError('bad_request', `limit must be in [1, 200], got ${limitRaw}`);
    }
    limit = n;
  }
  const cursor = c.req.query('cursor');
  const since = intParam(c, 'submitted_since');
  const page = await c.get('deps').jobs.list({
    statuses,
    owner: identifier(c.req.query('owner_instance_id')?.trim() || undefined, 'owner_instance_id'),
    capability: identifier(c.req.query('capability')?.trim() || undefined, 'capability'),
    submittedSince: since !== undefined && since > 0 ? since : undefined,
    limit,
    after: cursor ? decodeCursor(cursor) : undefined,
  });
  const body: ListJobsResponse = {
    jobs: page.rows,
    next_cursor: page.more && page.last ? encodeCursor(page.last.micros, page.last.id) : null,
  };
  return c.json(body);
}

/** `max_jobs` of a claim (`field` names it in the error): 1 unless given, within [1, maxClaimBatch]. */
function claimSize(max: number | null | undefined, field: string): number {
  const n = max ?? 1;
  if (n < 1 || n > limits.maxClaimBatch)
    throw new ApiError('bad_request', `${field} must be in [1, ${limits.maxClaimBatch}], got ${n}`);
  return n;
}

/**
 * What a claim answers (POST /jobs/claim, or beside deltas), counted in
 * `mesh_claims_total`; `null` (refused by a draining replica) answers empty
 * with `X-Mesh-Draining: true`, so that clients that know several replicas
 * claim elsewhere instead of backing off.
 *
 * Jobs claimed for a client that disconnected before this answer (a claim
 * statement or handoff racing its timeout, abort or shutdown) cannot reach
 * it: they are given back at once, their attempt uncounted
 * (JobStore.unclaimUnanswered, fenced by owner and epoch), instead of held
 * until their lease expires and counted as an attempt, and the answer (to a
 * connection that is gone) is empty. So are jobs a claim took after the
 * database bound had answered it 503 (`answered`, counted as `timed_out`):
 * its statement committed after the client was told it failed. A client cut
 * off without its connection closing (a partition) is not seen here; its
 * claims wait for their lease.
 */
async function claimAnswer(
  c: Context<AppEnv>,
  capability: string,
  instanceId: string,
  claimed: ClaimedJob[] | null,
): Promise<ClaimedJob[]> {
  const { jobs, metrics } = c.get('deps');
  if (claimed === null) {
    metrics?.claims.inc({ outcome: 'draining' });
    c.header(headers.draining, 'true');
    return [];
  }
  if (claimed.length > 0 && (c.req.raw.signal.aborted || c.var.answered)) {
    await jobs.unclaimUnanswered(capability, instanceId, claimed);
    metrics?.claims.inc({ outcome: c.var.answered ?? 'client_gone' }, claimed.length);
    return [];
  }
  if (claimed.length === 0) metrics?.claims.inc({ outcome: 'empty' });
  else metrics?.claims.inc({ outcome: 'claimed' }, claimed.length);
  return claimed;
}

/** MCP Mesh 3.7's jobs API, plus our extensions (batch claim, fenced release, lease renewal). */
export const jobRoutes = new Hono<AppEnv>()
  .post('/jobs', async (c) => {
    const body = await readJson(c, createJobRequest);
    const capability = identifier(required(body.capability, 'capability'), 'capability');
    const submittedBy = identifier(required(body.submitted_by, 'submitted_by'), 'submitted_by');
    if (body.submitted_payload === undefined || body.submitted_payload === null) {
      throw new ApiError('bad_request', 'submitted_payload is required');
    }
    const maxRetries = body.max_retries ?? 1;
    if (maxRetries < 0) throw new ApiError('bad_request', 'max_retries must be non-negative');
    if (maxRetries > limits.int32Max)
      throw new ApiError('bad_request', `max_retries must be at most ${limits.int32Max}`);
    const maxDuration = body.max_duration ?? null;
    if (maxDuration !== null && maxDuration < 1)
      throw new ApiError('bad_request', 'max_duration must be positive');
    if (maxDuration !== null && maxDuration > limits.int32Max) {
      throw new ApiError('bad_request', `max_duration must be at most ${limits.int32Max} seconds`);
    }
    const totalDeadline = body.total_deadline ?? null;
    if (totalDeadline !== null && (totalDeadline < 0 || totalDeadline > maxUnixSeconds)) {
      throw new ApiError(
        'bad_request',
        `total_deadline must be Unix seconds between 0 and ${maxUnixSeconds}`,
      );
    }
    const owner = body.owner_instance_id?.trim() || null;
    const keyHeader = c.req.header(headers.idempotencyKey);
    let idempotencyKey: string | null = null;
    if (keyHeader !== undefined) {
      const parsed = parseIdempotencyKey(keyHeader);
      if ('error' in parsed) throw new ApiError('bad_request', parsed.error);
      idempotencyKey = parsed.key;
    }
    const { replayed, ...created } = await c.get('deps').jobs.create({
      capability,
      submittedBy,
      payload: body.submitted_payload,
      maxRetries,
      maxDuration,
      totalDeadline,
      owner: owner ? identifier(owner, 'owner_instance_id') : null,
      idempotencyKey,
    });
    // A replay answers as the first submission was answered (the IETF draft:
    // the original response), 201 and the same body, and says it is one.
    if (replayed) c.header(headers.idempotentReplayed, 'true');
    return c.json(created satisfies CreateJobResponse, 201);
  })
  .get('/jobs', listJobs)
  .post('/jobs/claim', async (c) => {
    const body = await readJson(c, claimRequest);
    // Checked before the claim joins a statement shared with other claimers (issue 18).
    const capability = identifier(required(body.capability, 'capability'), 'capability');
    const instanceId = identifier(required(body.instance_id, 'instance_id'), 'instance_id');
    const max = claimSize(body.max_jobs, 'max_jobs');
    const waitMs = body.wait_ms ?? 0;
    if (waitMs < 0 || waitMs > limits.maxClaimWaitMs) {
      throw new ApiError('bad_request', `wait_ms must be in [0, ${limits.maxClaimWaitMs}], got ${waitMs}`);
    }
    const { jobs, gate, claimWaiters } = c.get('deps');
    // The drain barrier: a claim either passes the gate and finishes before a
    // drain answers, or is refused (no attempt burned, no epoch minted). A
    // long-poll claim parks while there is nothing to claim (wait_ms, ignored
    // when the feature is off, as an older registry would) and goes through
    // the same gate when woken; a drain answers it at once.
    const parks = waitMs > 0 && claimWaiters !== undefined;
    if (parks) c.get('slot')?.toLongPoll(waitMs);
    const claimed =
      parks && claimWaiters
        ? await claimWaiters.claim(capability, instanceId, max, waitMs, c.req.raw.signal)
        : await gate.claim(() => jobs.claim(capability, instanceId, max), null);
    return c.json({
      claimed: await claimAnswer(c, capability, instanceId, claimed),
    } satisfies ClaimResponse);
  })
  .post('/jobs/batch', async (c) => {
    const body = await readJson(c, batchRequest, {
      maxItems: { deltas: [limits.maxDeltas, 'deltas per batch'] },
    });
    const instanceId = identifier(required(body.instance_id, 'instance_id'), 'instance_id');
    if (!body.deltas || body.deltas.length === 0)
      throw new ApiError('bad_request', 'deltas must not be empty');
    if (body.deltas.some((d) => !d.id?.trim()))
      throw new ApiError('bad_request', 'every delta requires a non-empty id');
    const { jobs, metrics, gate, logger, features: offered } = c.get('deps');
    // A claim beside the deltas (ours, feature claim-beside-deltas; ignored
    // when off, as an older registry would): checked before anything runs.
    const ask = body.claim && offered.includes(features.claimBesideDeltas) ? body.claim : undefined;
    const claimAsk = ask && {
      capability: identifier(required(ask.capability, 'claim.capability'), 'claim.capability'),
      max: claimSize(ask.max_jobs, 'claim.max_jobs'),
    };
    // The deltas and the claim run side by side (different rows; each in the
    // statements it would share alone). The claim passes the drain barrier
    // like POST /jobs/claim. Claimed jobs whose answer cannot be sent (the
    // deltas failed) are given back at once, their attempt uncounted.
    const [applied, claim] = await Promise.allSettled([
      jobs.applyDeltas(instanceId, body.deltas),
      claimAsk ? gate.claim(() => jobs.claim(claimAsk.capability, instanceId, claimAsk.max), null) : null,
    ]);
    if (applied.status === 'rejected') {
      if (claimAsk && claim.status === 'fulfilled' && claim.value)
        await jobs.unclaimUnanswered(claimAsk.capability, instanceId, claim.value);
      throw applied.reason;
    }
    const result: BatchResponse = applied.value;
    if (claimAsk) {
      // A failed claim beside committed deltas answers them with nothing
      // claimed (and counts as no claim answer); the worker's next claim on
      // its own meets the failure.
      if (claim.status === 'rejected') {
        logger.warn({ err: claim.reason }, 'claim beside deltas failed; deltas answered');
        result.claimed = [];
      } else result.claimed = await claimAnswer(c, claimAsk.capability, instanceId, claim.value);
    }
    if (metrics) {
      if (result.accepted) metrics.deltas.inc({ outcome: 'accepted' }, result.accepted);
      for (const r of result.rejected) metrics.deltas.inc({ outcome: r.reason });
      const refused = new Set(result.rejected.map((r) => r.id));
      for (const d of body.deltas) {
        if ((d.status === 'completed' || d.status === 'failed') && !refused.has(d.id ?? '')) {
          metrics.jobsFinished.inc({ status: d.status });
        }
      }
    }
    return c.json(result);
  })
  .post('/jobs/leases', async (c) => {
    const body = await readJson(c, renewLeasesRequest, {
      maxItems: { leases: [limits.maxLeaseRenewals, 'leases per call'] },
    });
    const instanceId = identifier(required(body.instance_id, 'instance_id'), 'instance_id');
    const leases = body.leases ?? [];
    if (leases.length === 0) throw new ApiError('bad_request', 'leases must not be empty');
    const pairs = leases.map((l) => {
      const id = l.id?.trim();
      if (!id) throw new ApiError('bad_request', 'every lease requires a non-empty id');
      if (l.claim_epoch === undefined || l.claim_epoch === null) {
        throw new ApiError('bad_request', `lease ${id} requires claim_epoch`);
      }
      return { id, epoch: l.claim_epoch };
    });
    const results = await c.get('deps').jobs.renewLeases(instanceId, pairs);
    return c.json({ results } satisfies RenewLeasesResponse);
  })
  .get('/jobs/:id', async (c) => {
    const id = c.req.param('id');
    if (!isUuid(id)) throw jobNotFound(id);
    return c.json(await c.get('deps').jobs.get(id));
  })
  .post('/jobs/:id/release', async (c) => {
    const body = await readJson(c, releaseRequest);
    const instanceId = identifier(required(body.instance_id, 'instance_id'), 'instance_id');
    const released = await c
      .get('deps')
      .jobs.release(
        c.req.param('id'),
        instanceId,
        noNul(body.reason ?? '', 'reason'),
        body.claim_epoch ?? null,
      );
    return c.json(released);
  })
  .post('/jobs/:id/cancel', async (c) => {
    const body = await readJson(c, cancelRequest, { optional: true });
    const id = c.req.param('id');
    const reason = noNul(body.reason ?? '', 'reason');
    const { previousOwner } = await c.get('deps').jobs.cancel(id, reason);
    // No grace sleep: the `cancelled` event is committed before this answer, so
    // an owner parked in a long-poll already has it (reference §4.10). The
    // owner's own endpoint is told too, best effort, without holding the caller.
    if (previousOwner)
      void forwardCancel(c.get('deps'), previousOwner, id, reason, c.req.header('x-trace-id'));
    return c.json({ status: 'cancelled', forwarded_to_instance_id: previousOwner } satisfies CancelResponse);
  })
  .post('/jobs/:id/events', async (c) => {
    const body = await readJson(c, postEventRequest);
    const id = c.req.param('id');
    const type = identifier(required(body.type, 'type'), 'type');
    const bytes =
      Buffer.byteLength(JSON.stringify(body.payload ?? null)) +
      Buffer.byteLength(JSON.stringify(body.trace_context ?? null));
    if (bytes > limits.maxEventBytes) {
      throw new ApiError(
        'payload_too_large',
        `event payload and trace_context exceed ${limits.maxEventBytes} bytes (${bytes})`,
      );
    }
    const posted = await c
      .get('deps')
      .jobs.postEvent(id, type, body.payload, body.trace_context ?? null, bytes + Buffer.byteLength(type));
    return c.json({ job_id: id, ...posted });
  })
  .get('/jobs/:id/events', async (c) => {
    const id = c.req.param('id');
    const after = Math.max(0, intParam(c, 'after') ?? 0);
    const wait = Math.min(60, Math.max(0, intParam(c, 'wait') ?? 0));
    const limitRaw = intParam(c, 'limit') ?? 100;
    const limit = limitRaw <= 0 ? 100 : Math.min(500, limitRaw);
    const types = csv(c.req.query('types'));
    let instanceId = identifier(c.req.query('instance_id')?.trim() || undefined, 'instance_id');
    let epoch = intParam(c, 'claim_epoch');
    // Newer SDKs may carry their identity in headers instead (absent = legacy or observer).
    const headerId = c.req.header(headers.instanceId)?.trim();
    const headerEpoch = c.req.header(headers.claimEpoch)?.trim();
    if (
      instanceId === undefined &&
      epoch === undefined &&
      headerId &&
      headerEpoch &&
      /^\d+$/.test(headerEpoch)
    ) {
      instanceId = identifier(headerId, 'instance_id');
      epoch = Number(headerEpoch);
    }
    if ((instanceId === undefined) !== (epoch === undefined)) {
      throw new ApiError(
        'bad_request',
        'instance_id and claim_epoch must be supplied together (both for an executor read, or neither for an observer read)',
      );
    }
    if (!isUuid(id)) throw jobNotFound(id);
    const { jobs, signals } = c.get('deps');

    // An executor read is fenced and renews the lease (DESIGN.md §4.3) at the
    // start, on every wake-up, at least every third of the lease window while
    // parked, and at the end (§11 item 5). Once the job is terminal it is an
    // observer read: the handler must still see the event that ended it.
    let executor = instanceId !== undefined && epoch !== undefined;
    let renewEveryMs = Number.POSITIVE_INFINITY;
    let lastRenew = 0;
    const touch = async () => {
      if (!executor) return;
      const outcome = await jobs.touchExecutor(id, instanceId as string, epoch as number);
      if (outcome.state === 'missing') throw jobNotFound(id);
      if (outcome.state === 'superseded') throw new ApiError('claim_superseded');
      if (outcome.state === 'terminal') executor = false;
      else renewEveryMs = Math.max(1_000, (outcome.windowSeconds * 1000) / 3);
      lastRenew = Date.now();
    };
    if (executor) await touch();
    else if ((await jobs.jobState(id)) === 'missing') throw jobNotFound(id);

    let events = await jobs.readEvents(id, after, types, limit);
    if (events.length === 0 && wait > 0) {
      const deadline = Date.now() + wait * 1000;
      const aborted = c.req.raw.signal;
      while (events.length === 0 && !aborted.aborted) {
        const now = Date.now();
        if (now >= deadline) break;
        // The 2 s cap bounds the delay a lost notification could cause.
        const woke = await signals.wait(
          id,
          Math.min(deadline - now, 2_000, Math.max(0, lastRenew + renewEveryMs - now)),
          aborted,
        );
        if (woke === 'abort') break;
        events = await jobs.readEvents(id, after, types, limit);
        // A signal may be a reclaim: re-check the fence at once.
        if (woke === 'signal' || Date.now() - lastRenew >= renewEveryMs) await touch();
      }
      await touch();
    }
    const next = events.reduce((m, e) => Math.max(m, e.seq), after);
    return c.json({ events, next_after: next } satisfies EventsResponse);
  });

/**
 * POST {agent}/jobs/{id}/cancel (reference §2.10), best effort: failures are
 * logged and ignored. Anyone can cancel on the main port, so the target is
 * bounded by the CancelForwarder (issue 18), not by whatever the agent registered.
 */
export async function forwardCancel(
  deps: AppEnv['Variables']['deps'],
  owner: string,
  id: string,
  reason: string,
  traceId: string | undefined,
): Promise<void> {
  try {
    if (!deps.cancelForward.enabled) return;
    const endpoint = await deps.agents.endpoint(owner);
    if (!endpoint) return;
    const trace = traceId && traceId.length <= limits.maxIdentifierLength ? traceId : undefined;
    await deps.cancelForward.forward(endpoint, id, reason, trace);
  } catch (err) {
    deps.logger.debug({ err, job_id: id, owner }, 'cancel forward failed (ignored)');
  }
}

/** Force reclaim: an operator's action, so it moves to the admin port when there is one. */
export const reclaimRoutes = new Hono<AppEnv>().post('/jobs/:id/reclaim', async (c) =>
  c.json(await c.get('deps').jobs.reclaim(c.req.param('id'))),
);

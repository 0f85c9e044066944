import {
  type AgentRegistration,
  type BatchResponse,
  type ClaimedJob,
  type ClaimResponse,
  type CreateJobResponse,
  type EventsResponse,
  features as featureNames,
  formatIdempotencyKey,
  type Health,
  headers,
  type Job,
  type JobDelta,
  type JobSignalsResponse,
  limits,
  type PostEventResponse,
  type RegistrationResponse,
  type ReleaseResponse,
  type RenewLeasesResponse,
} from '@mesh/protocol';
import type { RegistryClientOptions, RegistryInfo, RequestOptions, SubmitOptions } from './client-options.ts';
import { DeltaBatcher, type DeltaOutcome } from './delta-batcher.ts';
import { RegistryError, RegistryUnreachableError } from './errors.ts';
import { retryAfterMs, sleep } from './retry.ts';
import { tokenFromEnv } from './token.ts';
import { httpRequest } from './transport.ts';
import { sdkVersion } from './version.ts';

// Moved out of this module (issue 36); still exported from it for whoever imports them from here.
export type { RegistryClientOptions, RegistryInfo, RequestOptions, SubmitOptions } from './client-options.ts';
export { RegistryError, RegistryUnreachableError } from './errors.ts';
export { retryAfterMs } from './retry.ts';

/**
 * Typed calls to a mesh registry over the 3.7 wire, with our extensions used
 * only where the registry advertises them.
 *
 * @example
 * const client = new RegistryClient({ urls: ['http://127.0.0.1:8000'] });
 * const { id } = await client.submit({ capability: 'echo', submitted_by: 'me', submitted_payload: { text: 'hi' } });
 */
export class RegistryClient {
  // Shared with the clients `forInstance()` derives: one failover position and
  // one `/health` read for all of them.
  private readonly shared: { current: number; info: Promise<RegistryInfo> | undefined };
  /** Coalesces each instance's terminal writes (`delta()`), by instance id. */
  private readonly batchers = new Map<string, DeltaBatcher>();
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly authorization: { authorization?: string };

  constructor(
    private readonly options: RegistryClientOptions,
    shared?: { current: number; info: Promise<RegistryInfo> | undefined },
  ) {
    if (options.urls.length === 0) throw new Error('RegistryClient needs at least one registry URL');
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.attempts = options.attempts ?? Math.max(3, options.urls.length * 2);
    this.shared = shared ?? { current: 0, info: undefined };
    this.authorization = (() => {
      const token = options.token ?? tokenFromEnv();
      return token ? { authorization: `Bearer ${token}` } : {};
    })();
  }

  /** The instance id sent as `X-Mesh-Instance-Id`, if any. */
  get instanceId(): string | undefined {
    return this.options.instanceId;
  }

  /**
   * The same client speaking for one agent instance (`X-Mesh-Instance-Id`);
   * failover position and registry info are shared.
   *
   * @example
   * const mine = client.forInstance(agent.id);
   */
  forInstance(instanceId: string): RegistryClient {
    if (this.options.instanceId === instanceId) return this;
    return new RegistryClient({ ...this.options, instanceId }, this.shared);
  }

  /**
   * Sends one request and returns whatever status came back. Network failures,
   * 503 and 429 move to the next URL and are retried with backoff and jitter
   * (never sooner than the registry's `Retry-After`, up to 30 s), but
   * only for requests that are safe to repeat (`retry`); a claim, for example,
   * is retried only when the connection was refused (it certainly did not run).
   * Throws a `RegistryUnreachableError` (URL and cause) when every attempt
   * failed without an answer.
   */
  async send(
    method: string,
    path: string,
    body?: unknown,
    options: RequestOptions = {},
  ): Promise<{ status: number; headers: Headers; body: unknown; text: string }> {
    let lastError: RegistryUnreachableError | undefined;
    let last503: { status: number; headers: Headers; body: unknown; text: string } | undefined;
    let notBefore = 0;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      options.signal?.throwIfAborted();
      const base = this.options.urls[this.shared.current % this.options.urls.length] as string;
      const url = `${base}${path}`;
      const timeout = AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs);
      try {
        const res = await httpRequest(url, {
          method,
          headers: {
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            [headers.sdkVersion]: sdkVersion,
            ...(this.options.instanceId ? { [headers.instanceId]: this.options.instanceId } : {}),
            ...this.authorization,
            ...options.headers,
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: options.signal ? AbortSignal.any([timeout, options.signal]) : timeout,
        });
        const { text } = res;
        let parsed: unknown;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          parsed = text;
        }
        const answer = { status: res.status, headers: res.headers, body: parsed, text };
        if ((res.status !== 503 && res.status !== 429) || !options.retry) return answer;
        last503 = answer;
        lastError = undefined;
        notBefore = retryAfterMs(res.headers) ?? 0;
      } catch (err) {
        // The caller gave up: not a failure of the registry.
        if (options.signal?.aborted) throw options.signal.reason;
        const refused = (err as { code?: string }).code === 'ECONNREFUSED';
        const unreachable = new RegistryUnreachableError(url, err, method);
        if (!refused && !options.retry) throw unreachable;
        lastError = unreachable;
        last503 = undefined;
        notBefore = 0;
      }
      this.shared.current += 1;
      // Exponential backoff with jitter; a Retry-After is a floor, jittered
      // upwards so shed clients do not all come back in the same instant.
      if (attempt + 1 < this.attempts) {
        const backoff = Math.min(2_000, 100 * 2 ** attempt) * (0.5 + Math.random());
        await sleep(notBefore > 0 ? notBefore * (1 + Math.random() * 0.5) : backoff);
      }
    }
    if (last503) return last503;
    throw lastError;
  }

  /** Sends one request (see `send`) and throws a `RegistryError` for any status but 2xx. */
  async request<T>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, body, options);
    if (res.status >= 200 && res.status < 300) return res.body as T;
    throw this.error(method, path, res);
  }

  private error(
    method: string,
    path: string,
    res: { status: number; headers: Headers; body: unknown; text: string },
  ) {
    return new RegistryError(
      res.status,
      res.body,
      `${method} ${path}: ${res.status} ${(res.body as { error?: string })?.error ?? res.text}`,
      res.status === 429 || res.status === 503 ? retryAfterMs(res.headers) : undefined,
    );
  }

  /** Version and features, read once from `/health`. */
  info(): Promise<RegistryInfo> {
    this.shared.info ??= this.request<Health>('GET', '/health', undefined, { retry: true }).then(
      (h) => ({
        version: h.version,
        features: new Set(h.features ?? []),
        extended: (h.features ?? []).length > 0,
      }),
      (err) => {
        this.shared.info = undefined;
        throw err;
      },
    );
    return this.shared.info;
  }

  /**
   * Submits a job (`POST /jobs`) with an `Idempotency-Key`: the one given, or
   * a random UUID per call. Against a registry that advertises
   * `idempotent-submit` the submission is retried like any safe request
   * (network errors, 503, next URL), with the same key, so a retry whose first
   * answer was lost gets the job already created, never a second one. Against
   * older registries (0.1.0, MCP Mesh 3.7) the key is sent but ignored, and
   * the submission is not retried once it may have reached the registry.
   * A key reused for a different job is refused: `RegistryError` with status
   * 422 (`idempotency_key_reused`). When the submission fails without an
   * answer (`RegistryUnreachableError`) or with a retryable status (429/503),
   * the job may still have been created: the error's `idempotencyKey` is the
   * key sent, and submitting again with it returns that job, never a second.
   *
   * @example
   * const { id } = await client.submit({ capability: 'echo', submitted_by: 'me', submitted_payload: { text: 'hi' } });
   * // Your own key: resubmitting after a crash finds the same job.
   * await client.submit(job, { idempotencyKey: `invoice-${invoice.id}` });
   */
  async submit(
    job: {
      capability: string;
      submitted_by: string;
      submitted_payload: Record<string, unknown>;
      max_retries?: number;
      /** Seconds: the lease window of each attempt. */
      max_duration?: number;
      /** Unix seconds: the job fails when it passes, and the handler's signal fires. */
      total_deadline?: number;
    },
    options: SubmitOptions = {},
  ): Promise<CreateJobResponse> {
    const raw = options.idempotencyKey ?? crypto.randomUUID();
    const key = formatIdempotencyKey(raw);
    const info = await this.info().catch(() => undefined);
    try {
      return await this.request<CreateJobResponse>('POST', '/jobs', job, {
        retry: info?.features.has(featureNames.idempotentSubmit) ?? false,
        headers: { [headers.idempotencyKey]: key },
        signal: options.signal,
      });
    } catch (err) {
      // The job may exist (an answer lost, a 503 after the commit): say how to find it.
      if (err instanceof RegistryUnreachableError || (err instanceof RegistryError && err.retryable)) {
        err.idempotencyKey = raw;
        err.message += `; the job may have been created: submit it again with { idempotencyKey: '${raw}' } to get it, never a second one`;
      }
      throw err;
    }
  }

  getJob(id: string, options: { signal?: AbortSignal } = {}): Promise<Job> {
    return this.request('GET', `/jobs/${id}`, undefined, { retry: true, signal: options.signal });
  }

  /** Claims up to `max` jobs (one per call against a registry without batch claims). */
  async claim(capability: string, instanceId: string, max = 1): Promise<ClaimedJob[]> {
    const first = await this.claimOnce(capability, instanceId, max);
    if (first.jobs.length > 0 || this.options.urls.length < 2) return first.jobs;
    // Nothing here. With several registry URLs the next claim goes to the next
    // one: a replica that drains without saying so (0.1.0, MCP Mesh) must not
    // keep an idle worker from the rest of the fleet. A draining replica that
    // says so (0.2.0 and later) is left at once: the next one is asked now.
    this.shared.current += 1;
    if (!first.draining) return first.jobs;
    return (await this.claimOnce(capability, instanceId, max)).jobs;
  }

  /**
   * A long-poll claim (`wait_ms`), against a registry that advertises
   * `long-poll-claim`: answers as soon as up to `max` jobs are claimed, or
   * empty after `waitMs` (at most `limits.maxClaimWaitMs`) when no work for
   * the capability was queued on any replica meanwhile. `draining`: the
   * replica answered at once because it is draining (or stopping); with
   * several registry URLs the next one is asked before answering.
   * `undefined` against a registry without the feature (0.1.0, MCP Mesh 3.7):
   * poll with `claim` instead. Aborting `signal` gives up the request; a claim
   * the registry commits after the connection closed is given back (0.2.0), one
   * whose answer was already on its way is lost with it and its lease expires.
   *
   * @example
   * const got = await client.claimWait('echo', agentId, 4, { waitMs: 25_000 });
   * if (got === undefined) await client.claim('echo', agentId, 4); // an older registry
   */
  async claimWait(
    capability: string,
    instanceId: string,
    max: number,
    options: { waitMs: number; signal?: AbortSignal },
  ): Promise<{ jobs: ClaimedJob[]; draining: boolean } | undefined> {
    const info = await this.info();
    if (!info.features.has(featureNames.longPollClaim)) return undefined;
    const waitMs = Math.max(0, Math.min(limits.maxClaimWaitMs, Math.trunc(options.waitMs)));
    const first = await this.claimOnce(capability, instanceId, max, waitMs, options.signal);
    if (!first.draining || this.options.urls.length < 2) return first;
    this.shared.current += 1;
    return this.claimOnce(capability, instanceId, max, waitMs, options.signal);
  }

  private async claimOnce(
    capability: string,
    instanceId: string,
    max: number,
    waitMs = 0,
    signal?: AbortSignal,
  ): Promise<{ jobs: ClaimedJob[]; draining: boolean }> {
    const info = await this.info();
    const body = {
      capability,
      instance_id: instanceId,
      ...(info.features.has(featureNames.batchClaim) && max > 1 ? { max_jobs: max } : {}),
      ...(waitMs > 0 ? { wait_ms: waitMs } : {}),
    };
    const res = await this.send(
      'POST',
      '/jobs/claim',
      body,
      waitMs > 0 ? { timeoutMs: this.timeoutMs + waitMs, signal } : { signal },
    );
    if (res.status < 200 || res.status >= 300) throw this.error('POST', '/jobs/claim', res);
    const answer = res.body as ClaimResponse | undefined;
    return {
      // 3.7 SDKs treat a 204 or a malformed answer as "no work"; so do we.
      jobs: Array.isArray(answer?.claimed) ? answer.claimed : [],
      draining: res.headers.get(headers.draining) === 'true',
    };
  }

  /**
   * One owner delta of `instanceId`, answered on its own. With `coalesce`, on
   * a registry that fences and answers each delta apart (feature
   * `batch-claim`: ours), deltas made in the same turn of the event loop share
   * one `POST /jobs/batch` (delta-batcher.ts); elsewhere (MCP Mesh 3.7 refuses
   * a whole batch for one bad delta) and without an epoch it goes alone.
   */
  async delta(instanceId: string, delta: JobDelta, coalesce = false): Promise<DeltaOutcome> {
    if (coalesce && delta.claim_epoch !== undefined && delta.claim_epoch !== null) {
      const info = await this.info();
      if (info.features.has(featureNames.batchClaim)) {
        return this.batcher(instanceId).write(delta);
      }
    }
    const res = await this.deltas(instanceId, [delta]);
    const rejected = res.rejected?.[0];
    return rejected ? { accepted: false, rejected } : { accepted: res.accepted === 1 };
  }

  private batcher(instanceId: string): DeltaBatcher {
    let batcher = this.batchers.get(instanceId);
    if (!batcher) {
      batcher = new DeltaBatcher((deltas, claim) => this.deltas(instanceId, deltas, claim));
      this.batchers.set(instanceId, batcher);
    }
    return batcher;
  }

  /**
   * Claims up to `max` jobs beside the owner deltas `instanceId` makes in
   * this turn of the event loop (with `delta(…, coalesce)`): one `POST
   * /jobs/batch` carries the outcomes and the claim, on a registry that
   * offers `claim-beside-deltas`. `undefined` when it could not ride (no
   * delta this turn, an older registry): claim on your own. Never waits for
   * work to be queued.
   */
  async claimBeside(
    instanceId: string,
    capability: string,
    max: number,
  ): Promise<{ jobs: ClaimedJob[]; draining: boolean } | undefined> {
    const info = await this.info();
    if (!info.features.has(featureNames.claimBesideDeltas) || !info.features.has(featureNames.batchClaim))
      return undefined;
    return this.batcher(instanceId).claim({ capability, max });
  }

  /**
   * Owner deltas (`POST /jobs/batch`); a delta carrying `claim_epoch` is fenced
   * by it. With `claim` (feature `claim-beside-deltas`) the same request
   * claims beside them: sent once (a claim is not safe to repeat), and if it
   * gets no answer or is shed the deltas are sent again alone, as usual, and
   * nothing is claimed (a claim made by the lost request waits for its lease).
   */
  async deltas(
    instanceId: string,
    deltas: JobDelta[],
    claim?: { capability: string; max: number },
  ): Promise<BatchResponse & { draining?: boolean; claimRefused?: RegistryError }> {
    const only = deltas.length === 1 ? deltas[0] : undefined;
    const options = { headers: epochHeader(only?.claim_epoch) };
    if (claim) {
      const body = {
        instance_id: instanceId,
        deltas,
        claim: { capability: claim.capability, ...(claim.max > 1 ? { max_jobs: claim.max } : {}) },
      };
      const res = await this.send('POST', '/jobs/batch', body, options).catch(() => undefined);
      if (res && res.status >= 200 && res.status < 300) {
        return {
          ...(res.body as BatchResponse),
          draining: res.headers.get(headers.draining) === 'true',
        };
      }
      // Refused (say, a bad capability): the claim fails with that answer, the deltas go alone.
      const claimRefused =
        res && res.status !== 503 && res.status !== 429 ? this.error('POST', '/jobs/batch', res) : undefined;
      const alone: BatchResponse = await this.request(
        'POST',
        '/jobs/batch',
        { instance_id: instanceId, deltas },
        { retry: true, ...options },
      );
      return { ...alone, claimed: [], claimRefused };
    }
    return this.request(
      'POST',
      '/jobs/batch',
      { instance_id: instanceId, deltas },
      { retry: true, ...options },
    );
  }

  /** Gives a job back; fenced by `claimEpoch` where the registry supports it. */
  async release(
    id: string,
    instanceId: string,
    claimEpoch: number | null,
    reason = '',
  ): Promise<ReleaseResponse> {
    const info = await this.info();
    const fenced = info.features.has(featureNames.fencedRelease) && claimEpoch !== null;
    return this.request(
      'POST',
      `/jobs/${id}/release`,
      {
        instance_id: instanceId,
        reason,
        ...(fenced ? { claim_epoch: claimEpoch } : {}),
      },
      { headers: epochHeader(claimEpoch) },
    );
  }

  /** Renews leases in one call where supported; `undefined` against a registry without it. */
  async renewLeases(
    instanceId: string,
    leases: { id: string; claim_epoch: number }[],
  ): Promise<RenewLeasesResponse | undefined> {
    const info = await this.info();
    if (!info.features.has(featureNames.leaseRenewal)) return undefined;
    return this.request('POST', '/jobs/leases', { instance_id: instanceId, leases }, { retry: true });
  }

  /**
   * Long-polls for what happened to the claims an instance holds (`POST
   * /jobs/signals`): answers at once, or as soon as one of them is cancelled,
   * re-claimed or ended within `wait` seconds. `undefined` against a registry
   * without the `job-signals` feature (0.1.0, MCP Mesh 3.7).
   */
  async claimSignals(
    instanceId: string,
    jobs: { id: string; claim_epoch: number }[],
    options: { wait?: number; signal?: AbortSignal } = {},
  ): Promise<JobSignalsResponse | undefined> {
    const info = await this.info();
    if (!info.features.has(featureNames.jobSignals)) return undefined;
    return this.request(
      'POST',
      '/jobs/signals',
      { instance_id: instanceId, jobs, wait: options.wait ?? 0 },
      { retry: true, timeoutMs: this.timeoutMs + (options.wait ?? 0) * 1000, signal: options.signal },
    );
  }

  cancel(id: string, reason = ''): Promise<{ status: string; forwarded_to_instance_id: string | null }> {
    return this.request('POST', `/jobs/${id}/cancel`, reason ? { reason } : undefined);
  }

  /** Appends an event to a live job's log (anyone holding the job id may). */
  postEvent(id: string, type: string, payload?: unknown): Promise<PostEventResponse> {
    return this.request('POST', `/jobs/${id}/events`, { type, payload });
  }

  /**
   * Answers a job waiting for input (`status: input_required`, the prompt in
   * `progress_message`): posts a `user_input` event the handler's
   * `requestInput()` receives.
   *
   * @example
   * const job = await waitForJob(client, id, { until: ['input_required'] });
   * console.log(job.progress_message); // the prompt
   * await client.sendInput(id, { approved: true });
   */
  sendInput(id: string, payload: unknown, type: string = inputEventType): Promise<PostEventResponse> {
    return this.postEvent(id, type, payload);
  }

  /**
   * Reads a job's events. With `executor` it is the owner's read: fenced by the
   * claim epoch (409 `claim_superseded` once superseded) and renewing the lease.
   * `wait` (seconds, at most 60) long-polls until a matching event arrives.
   */
  readEvents(
    id: string,
    options: {
      after?: number;
      types?: string[];
      wait?: number;
      limit?: number;
      executor?: { instanceId: string; claimEpoch: number };
      signal?: AbortSignal;
    } = {},
  ): Promise<EventsResponse> {
    const q = new URLSearchParams();
    if (options.after) q.set('after', String(options.after));
    if (options.types?.length) q.set('types', options.types.join(','));
    if (options.wait) q.set('wait', String(options.wait));
    if (options.limit) q.set('limit', String(options.limit));
    if (options.executor) {
      q.set('instance_id', options.executor.instanceId);
      q.set('claim_epoch', String(options.executor.claimEpoch));
    }
    const query = q.toString();
    return this.request('GET', `/jobs/${id}/events${query ? `?${query}` : ''}`, undefined, {
      retry: true,
      timeoutMs: this.timeoutMs + (options.wait ?? 0) * 1000,
      headers: epochHeader(options.executor?.claimEpoch),
      signal: options.signal,
    });
  }

  /**
   * Registers an agent or sends its full heartbeat (`POST /heartbeat`). A
   * registration the registry refuses (HTTP 200 with `status: "error"`, e.g. an
   * invalid name) is returned as it is: check `status`.
   */
  register(registration: AgentRegistration): Promise<RegistrationResponse> {
    return this.request('POST', '/heartbeat', registration, { retry: true });
  }

  /**
   * The fast heartbeat (`HEAD /heartbeat/{id}`): 200 nothing changed, 202 the
   * topology changed (send a full heartbeat), 410 unknown or unhealthy
   * (register again), 503 the registry could not record it. `pendingJobs` is
   * the registry's hint of claimable work for the agent's name group (0 when
   * absent or malformed).
   */
  async fastHeartbeat(agentId: string): Promise<{ status: number; pendingJobs: number }> {
    const res = await this.send('HEAD', `/heartbeat/${encodeURIComponent(agentId)}`, undefined, {
      retry: true,
    });
    const hint = Number.parseInt(res.headers.get(headers.pendingJobs) ?? '', 10);
    return { status: res.status, pendingJobs: Number.isFinite(hint) && hint > 0 ? hint : 0 };
  }

  /** Unregisters an agent (`DELETE /agents/{id}`; idempotent). */
  async unregister(agentId: string): Promise<void> {
    await this.request('DELETE', `/agents/${encodeURIComponent(agentId)}`, undefined, { retry: true });
  }
}

/** The event type `sendInput()` posts and `requestInput()` waits for (the reference's example). */
export const inputEventType = 'user_input';

const epochHeader = (epoch: number | null | undefined): Record<string, string> =>
  epoch === null || epoch === undefined ? {} : { [headers.claimEpoch]: String(epoch) };

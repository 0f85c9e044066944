import {
  type BatchResponse,
  type ClaimedJob,
  type ClaimResponse,
  type CreateJobResponse,
  type EventsResponse,
  features as featureNames,
  type Health,
  headers,
  type Job,
  type JobDelta,
  type ReleaseResponse,
  type RenewLeasesResponse,
} from '@mesh/protocol';
import { sdkVersion } from './version.ts';

/** A registry answered with an error status; `code`/`body` are what it said. */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    readonly status: number,
    readonly body: unknown,
    message: string,
  ) {
    super(message);
  }
  /** The 3.7 fence marker (`{"error": "claim_superseded"}`). */
  get superseded(): boolean {
    return (this.body as { error?: string } | undefined)?.error === 'claim_superseded';
  }
}

export interface RegistryClientOptions {
  /** One or more registry URLs; the client fails over between them (an HA fleet without a load balancer). */
  urls: string[];
  /** Per-request timeout. */
  timeoutMs?: number;
  /** Attempts per request across URLs, for failures worth retrying. */
  attempts?: number;
  /** Sent as `X-Mesh-Instance-Id` when set. */
  instanceId?: string;
}

/** What the registry supports, from `/health` (MCP Mesh 3.7 reports version "1.0.0" and no features). */
export interface RegistryInfo {
  version: string;
  features: Set<string>;
  /** True for a registry with our extensions (not MCP Mesh 3.7). */
  extended: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Typed calls to a mesh registry over the 3.7 wire, with our extensions used
 * only where the registry advertises them.
 *
 * @example
 * const client = new RegistryClient({ urls: ['http://127.0.0.1:8000'] });
 * const { id } = await client.submit({ capability: 'echo', submitted_by: 'me', submitted_payload: { text: 'hi' } });
 */
export class RegistryClient {
  private current = 0;
  private infoPromise: Promise<RegistryInfo> | undefined;
  private readonly timeoutMs: number;
  private readonly attempts: number;

  constructor(private readonly options: RegistryClientOptions) {
    if (options.urls.length === 0) throw new Error('RegistryClient needs at least one registry URL');
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.attempts = options.attempts ?? Math.max(3, options.urls.length * 2);
  }

  /**
   * Sends one request. Network failures and 503 move to the next URL and are
   * retried with backoff and jitter, but only for requests that are safe to
   * repeat (`retry`); a claim, for example, is retried only when the
   * connection was refused (it certainly did not run).
   */
  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    options: { retry?: boolean; timeoutMs?: number } = {},
  ): Promise<T> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      const base = this.options.urls[this.current % this.options.urls.length] as string;
      try {
        const res = await fetch(`${base}${path}`, {
          method,
          headers: {
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            [headers.sdkVersion]: sdkVersion,
            ...(this.options.instanceId ? { [headers.instanceId]: this.options.instanceId } : {}),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs),
        });
        const text = await res.text();
        let parsed: unknown;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          parsed = text;
        }
        if (res.ok) return parsed as T;
        const error = new RegistryError(
          res.status,
          parsed,
          `${method} ${path}: ${res.status} ${(parsed as { error?: string })?.error ?? text}`,
        );
        if (res.status !== 503 || !options.retry) throw error;
        lastError = error;
      } catch (err) {
        if (err instanceof RegistryError && !(err.status === 503 && options.retry)) throw err;
        const refused = (err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED';
        if (!(err instanceof RegistryError) && !refused && !options.retry) throw err;
        lastError = err;
      }
      this.current += 1;
      await sleep(Math.min(2_000, 100 * 2 ** attempt) * (0.5 + Math.random()));
    }
    throw lastError;
  }

  /** Version and features, read once from `/health`. */
  info(): Promise<RegistryInfo> {
    this.infoPromise ??= this.request<Health>('GET', '/health', undefined, { retry: true }).then(
      (h) => ({
        version: h.version,
        features: new Set(h.features ?? []),
        extended: (h.features ?? []).length > 0,
      }),
      (err) => {
        this.infoPromise = undefined;
        throw err;
      },
    );
    return this.infoPromise;
  }

  submit(job: {
    capability: string;
    submitted_by: string;
    submitted_payload: Record<string, unknown>;
    max_retries?: number;
    max_duration?: number;
    total_deadline?: number;
  }): Promise<CreateJobResponse> {
    return this.request('POST', '/jobs', job);
  }

  getJob(id: string): Promise<Job> {
    return this.request('GET', `/jobs/${id}`, undefined, { retry: true });
  }

  /** Claims up to `max` jobs (one per call against a registry without batch claims). */
  async claim(capability: string, instanceId: string, max = 1): Promise<ClaimedJob[]> {
    const info = await this.info();
    const body =
      info.features.has(featureNames.batchClaim) && max > 1
        ? { capability, instance_id: instanceId, max_jobs: max }
        : { capability, instance_id: instanceId };
    return (await this.request<ClaimResponse>('POST', '/jobs/claim', body)).claimed;
  }

  deltas(instanceId: string, deltas: JobDelta[]): Promise<BatchResponse> {
    return this.request('POST', '/jobs/batch', { instance_id: instanceId, deltas }, { retry: true });
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
    return this.request('POST', `/jobs/${id}/release`, {
      instance_id: instanceId,
      reason,
      ...(fenced ? { claim_epoch: claimEpoch } : {}),
    });
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

  cancel(id: string, reason = ''): Promise<{ status: string; forwarded_to_instance_id: string | null }> {
    return this.request('POST', `/jobs/${id}/cancel`, reason ? { reason } : undefined);
  }

  postEvent(
    id: string,
    type: string,
    payload?: unknown,
  ): Promise<{ job_id: string; seq: number; created_at: number }> {
    return this.request('POST', `/jobs/${id}/events`, { type, payload });
  }

  readEvents(
    id: string,
    options: {
      after?: number;
      types?: string[];
      wait?: number;
      executor?: { instanceId: string; claimEpoch: number };
    } = {},
  ): Promise<EventsResponse> {
    const q = new URLSearchParams();
    if (options.after) q.set('after', String(options.after));
    if (options.types?.length) q.set('types', options.types.join(','));
    if (options.wait) q.set('wait', String(options.wait));
    if (options.executor) {
      q.set('instance_id', options.executor.instanceId);
      q.set('claim_epoch', String(options.executor.claimEpoch));
    }
    const query = q.toString();
    return this.request('GET', `/jobs/${id}/events${query ? `?${query}` : ''}`, undefined, {
      retry: true,
      timeoutMs: this.timeoutMs + (options.wait ?? 0) * 1000,
    });
  }
}

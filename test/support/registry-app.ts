import { createDb } from '@mesh/db';
import { features } from '@mesh/protocol';
import { createApp, createLogger, type Surface } from '@mesh/registry';
import { type TestDatabase, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll } from 'vitest';
import { type AgentSettings, AgentStore } from '../../apps/registry/src/services/agents.ts';
import {
  CancelForwarder,
  type CancelForwardSettings,
} from '../../apps/registry/src/services/cancel-forward.ts';
import { DrainGate } from '../../apps/registry/src/services/drain.ts';
import { JobSignals } from '../../apps/registry/src/services/job-signals.ts';
import { type JobSettings, JobStore } from '../../apps/registry/src/services/jobs.ts';
import { Sweeper, type SweepSettings } from '../../apps/registry/src/services/sweeper.ts';

export interface TestRegistryOptions {
  jobs?: Partial<JobSettings>;
  sweep?: Partial<SweepSettings>;
  poolSize?: number;
  maxBodyBytes?: number;
  adminToken?: string;
  /** Agent and client bearer tokens of the main port (apps/registry/src/tokens.ts). */
  tokens?: { agent?: string[]; client?: string[] };
  agents?: Partial<AgentSettings>;
  /** Which routes the app serves (see createApp). */
  surface?: Surface;
  cancelForward?: Partial<CancelForwardSettings>;
}

/**
 * The registry's HTTP app in this process, on a real database, without a
 * listening socket: `call()` goes through every middleware and route. The
 * sweeper is not started; tests run its phases when they choose.
 */
export async function startTestRegistry(databaseUrl: string, options: TestRegistryOptions = {}) {
  const { sql } = createDb(databaseUrl, { max: options.poolSize ?? 10, applicationName: 'mesh-test' });
  const logger = createLogger({
    logLevel: (process.env.MESH_TEST_LOG_LEVEL as 'silent') ?? 'silent',
    logFormat: 'json',
    replicaId: 'test',
  });
  const jobs = new JobStore(sql, {
    defaultLeaseSeconds: 300,
    requireClaimEpoch: false,
    replicaId: 'test',
    ...options.jobs,
  });
  const signals = new JobSignals(sql, logger);
  const gate = new DrainGate();
  const agents = new AgentStore(sql, { timeoutThresholdSeconds: 20, ...options.agents }, logger);
  await signals.start();
  const sweeper = new Sweeper(
    sql,
    {
      intervalMs: 1_000,
      staleTimeoutMs: 0,
      eventRetentionMs: 3_600_000,
      jobRetentionMs: 0,
      orphanQuietMs: 20_000,
      ...options.sweep,
    },
    logger,
  );
  const app = createApp(
    {
      identity: {
        replicaId: 'test',
        bootId: crypto.randomUUID(),
        version: '0.0.0-test',
        schemaVersion: 1,
        uptimeSeconds: () => 0,
      },
      readiness: { check: async () => ({ database: 'ok', migrations: 'done', lifecycle: 'running' }) },
      gate,
      tokens: { admin: options.adminToken ? [options.adminToken] : [], ...options.tokens },
      features: Object.values(features),
      logger,
      jobs,
      agents,
      signals,
      cancelForward: new CancelForwarder(
        { policy: { kind: 'any' }, timeoutMs: 2_000, ...options.cancelForward },
        logger,
      ),
      maxBodyBytes: options.maxBodyBytes,
    },
    options.surface,
  );

  /** Sends a request; JSON bodies are serialised, strings sent as they are. */
  async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const init: RequestInit = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
    const res = await app.request(path, init);
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary wire bodies
    return { status: res.status, body: json as any, text, headers: res.headers };
  }

  return {
    app,
    agents,
    gate,
    sql,
    jobs,
    sweeper,
    call,
    async close() {
      await signals.stop();
      await sql.end({ timeout: 5 });
    },
  };
}

export type TestRegistry = Awaited<ReturnType<typeof startTestRegistry>>;

/**
 * A fresh database and an in-process registry on it for the current test
 * file: started before its tests, closed (then the database dropped) after.
 *
 * @example
 * const r = useTestRegistry();
 * it('…', async () => { expect((await r.call('GET', '/health')).status).toBe(200); });
 */
export function useTestRegistry(options: TestRegistryOptions = {}): TestRegistry & { db: TestDatabase } {
  const db = useTestDatabase();
  const ref = { db } as TestRegistry & { db: TestDatabase };
  beforeAll(async () => {
    Object.assign(ref, await startTestRegistry(db.url, options));
  }, 60_000);
  afterAll(async () => {
    await ref.close?.();
  });
  return ref;
}

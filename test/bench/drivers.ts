/**
 * The ways `pnpm bench:jobs` reaches a registry (issue 17): over HTTP with its
 * own lean client (http1.ts, the default), over HTTP with plain `node:http`
 * (`--client node-http`), or with no HTTP at all (`--mode db`): the registry's
 * own JobStore (the very claim and fenced-completion statements, and the
 * coalescer that shares them) called from the benchmark process through
 * postgres.js, with the registry's pool sizes. The workload speaks HTTP paths
 * to all three.
 */
import http from 'node:http';
import { createDb } from '@mesh/db';
import { JobStore } from '../../apps/registry/src/services/jobs.ts';
import { Http1Connection, type Http1Response } from './http1.ts';

export interface BenchConnection {
  request(method: string, path: string, body?: unknown): Promise<Http1Response>;
  close(): void;
}

export type ClientKind = 'http1' | 'node-http';

/** One keep-alive node:http connection (an Agent with one socket), JSON in and out. */
export class NodeHttpConnection implements BenchConnection {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  request(method: string, path: string, body?: unknown): Promise<Http1Response> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: this.agent,
          headers: payload === undefined ? {} : { 'content-type': 'application/json' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              json = text;
            }
            resolve({ status: res.statusCode ?? 0, json });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  close() {
    this.agent.destroy();
  }
}

export function httpConnection(kind: ClientKind, base: string): BenchConnection {
  const { hostname, port } = new URL(base);
  return kind === 'node-http'
    ? new NodeHttpConnection(hostname, Number(port))
    : new Http1Connection(hostname, Number(port));
}

/**
 * The registry's job service in this process, on `databaseUrl`, with the
 * registry's defaults (a pool of 20, 3 connections for the shared statements).
 * Answers the workload's requests as the routes would, minus HTTP, parsing and
 * validation: registration and heartbeats are no-ops (claims do not need them).
 */
export function directStore(databaseUrl: string, poolSize = 20, jobPoolSize = 3) {
  const { sql } = createDb(databaseUrl, { max: poolSize, applicationName: 'bench-db-mode' });
  const { sql: shared } = createDb(databaseUrl, { max: jobPoolSize, applicationName: 'bench-db-mode:jobs' });
  const store = new JobStore(
    sql,
    { defaultLeaseSeconds: 300, requireClaimEpoch: false, replicaId: 'bench-db-mode' },
    shared,
  );
  type Body = Record<string, unknown>;
  const connection = (): BenchConnection => ({
    async request(method, path, body) {
      const b = (body ?? {}) as Body;
      if (path === '/heartbeat' || method === 'HEAD') return { status: 200, json: {} };
      if (path === '/jobs') {
        const created = await store.create({
          capability: b.capability as string,
          submittedBy: b.submitted_by as string,
          payload: b.submitted_payload as Record<string, unknown>,
          maxRetries: 3,
          maxDuration: null,
          totalDeadline: null,
          owner: null,
        });
        return { status: 201, json: { job_id: created.id, status: created.status } };
      }
      if (path === '/jobs/claim') {
        const claimed = await store.claim(
          b.capability as string,
          b.instance_id as string,
          (b.max_jobs as number | undefined) ?? 1,
        );
        return { status: 200, json: { claimed } };
      }
      if (path === '/jobs/batch') {
        // With `claim` (--beside): the deltas and the claim side by side, as the route runs them.
        const claim = b.claim as { capability: string; max_jobs?: number } | undefined;
        const [applied, claimed] = await Promise.all([
          store.applyDeltas(b.instance_id as string, b.deltas as never),
          claim ? store.claim(claim.capability, b.instance_id as string, claim.max_jobs ?? 1) : undefined,
        ]);
        return { status: 200, json: claimed ? { ...applied, claimed } : applied };
      }
      throw new Error(`db mode: no ${method} ${path}`);
    },
    close() {},
  });
  return {
    connection,
    async close() {
      await Promise.all([sql.end({ timeout: 5 }), shared.end({ timeout: 5 })]);
    },
  };
}

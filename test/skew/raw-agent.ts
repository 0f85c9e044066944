import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { call } from '../support/http.ts';
import { until } from '../support/until.ts';

interface Forward {
  path: string;
  body: unknown;
  at: number;
}

/**
 * A raw MCP Mesh 3.7 client, as their Python and Go clients speak the wire:
 * plain JSON calls (no `claim_epoch` anywhere, no `X-Mesh-*` headers),
 * registered with `POST /heartbeat` and kept alive with `HEAD /heartbeat/{id}`,
 * serving the `POST /jobs/{id}/cancel` forward on its own endpoint.
 */
export class RawAgent {
  private beat: NodeJS.Timeout | undefined;

  private constructor(
    readonly url: string,
    readonly id: string,
    private readonly name: string,
    private readonly capabilities: string[],
    private readonly server: Server,
    /** Cancel forwards the registry sent to this agent. */
    readonly forwards: Forward[],
  ) {}

  /**
   * Starts the agent's endpoint, registers it with its task capabilities and
   * heartbeats every second.
   */
  static async start(url: string, name: string, capabilities: string[]): Promise<RawAgent> {
    const forwards: Forward[] = [];
    const server = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => {
        text += c.toString('utf8');
      });
      req.on('end', () => {
        let body: unknown = text;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          // kept as text
        }
        forwards.push({ path: req.url ?? '', body, at: Date.now() });
        const jobId = /^\/jobs\/([^/]+)\/cancel$/.exec(req.url ?? '')?.[1];
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ cancelled: Boolean(jobId), job_id: jobId ?? '' }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const id = `${name}-${randomBytes(4).toString('hex')}`;
    const agent = new RawAgent(url, id, name, capabilities, server, forwards);
    await agent.register();
    agent.beat = setInterval(() => void agent.heartbeat(), 1_000);
    return agent;
  }

  /** One call on the 3.7 wire: a JSON content type and nothing else. */
  wire(method: string, path: string, body?: unknown) {
    return call(this.url, method, path, body);
  }

  private async register(): Promise<void> {
    const { port } = this.server.address() as AddressInfo;
    const res = await this.wire('POST', '/heartbeat', {
      agent_id: this.id,
      name: this.name,
      agent_type: 'mcp_agent',
      version: '1.0.0',
      runtime: 'python',
      http_host: '127.0.0.1',
      http_port: port,
      namespace: 'default',
      tools: this.capabilities.map((capability) => ({
        function_name: capability.replaceAll('-', '_'),
        capability,
        version: '1.0.0',
        kwargs: { task: true },
      })),
    });
    if (res.status !== 200 || res.body?.status !== 'success')
      throw new Error(`registration of ${this.id}: ${res.status} ${JSON.stringify(res.body)}`);
  }

  private async heartbeat(): Promise<void> {
    try {
      const res = await this.wire('HEAD', `/heartbeat/${this.id}`);
      if (res.status === 410 || res.status === 202) await this.register();
    } catch {
      // the next beat tries again
    }
  }

  /** Polls `POST /jobs/claim` until it hands out a job. */
  // biome-ignore lint/suspicious/noExplicitAny: raw wire bodies
  async claim(capability: string, timeoutMs = 20_000): Promise<any> {
    return until(
      `${this.id} to claim a ${capability} job`,
      async () => {
        const res = await this.wire('POST', '/jobs/claim', { capability, instance_id: this.id });
        if (res.status !== 200) throw new Error(`claim: ${res.status} ${JSON.stringify(res.body)}`);
        return res.body.claimed?.[0];
      },
      timeoutMs,
    );
  }

  /** One epoch-less owner delta; returns the batch's answer. */
  // biome-ignore lint/suspicious/noExplicitAny: raw wire bodies
  async delta(id: string, delta: Record<string, unknown> = {}): Promise<any> {
    const res = await this.wire('POST', '/jobs/batch', { instance_id: this.id, deltas: [{ id, ...delta }] });
    if (res.status !== 200) throw new Error(`delta: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  release(id: string, reason: string) {
    return this.wire('POST', `/jobs/${id}/release`, { instance_id: this.id, reason });
  }

  async stop(): Promise<void> {
    clearInterval(this.beat);
    await this.wire('DELETE', `/agents/${this.id}`).catch(() => undefined);
    await new Promise<void>((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}

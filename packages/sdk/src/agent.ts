import { randomBytes } from 'node:crypto';
import {
  type AgentRegistration,
  agentIdentifierPattern,
  maxAgentNameLength,
  type RegistrationResponse,
  type ResolvedDependency,
  type ToolRegistration,
} from '@mesh/protocol';
import { ClaimWatcher } from './claim-watch.ts';
import type { RegistryClient } from './client.ts';
import { JobWorker, type JobWorkerOptions } from './worker.ts';

export interface AgentOptions {
  client: RegistryClient;
  /** The agent's name: its replica group in the registry (lowercase letters, digits and '-'). */
  name: string;
  /** The agent's own version (default "1.0.0"). */
  version?: string;
  description?: string;
  namespace?: string;
  /** Reported as `runtime` (default "typescript"). */
  runtime?: string;
  agentType?: 'mcp_agent' | 'api' | 'a2a';
  /** Where this agent can be reached (`http_host`/`http_port`): the registry forwards cancels there. */
  endpoint?: { host: string; port: number };
  /** Tools as the 3.7 wire spells them (dependencies, tags, kwargs…). */
  tools?: ToolRegistration[];
  /** Shorthand for job-providing tools: each becomes `{function_name, capability, kwargs: {task: true}}`. */
  capabilities?: string[];
  /** Fast heartbeat period (default 5 s, as the reference SDK). */
  heartbeatIntervalMs?: number;
  /** Heartbeats failing in a row before the agent re-registers with backoff (default 4). */
  missedThreshold?: number;
}

/** Why a full registration was sent. */
export type RegistrationReason = 'start' | 'topology' | 'reregister' | 'reconnect' | 'update';

export interface AgentEvents {
  /** Every successful full heartbeat (`POST /heartbeat`). */
  registered: (response: RegistrationResponse, reason: RegistrationReason) => void;
  /** The resolved dependencies changed (a provider came, went or moved). */
  dependencies: (resolved: Record<string, ResolvedDependency[]>) => void;
  /** A heartbeat or registration failed; `consecutive` counts them. */
  heartbeatFailed: (error: unknown, consecutive: number) => void;
  /** The registry hinted at claimable work for this agent's name group (`X-Mesh-Pending-Jobs`). */
  pendingJobs: (count: number) => void;
}

/** A registration the registry refused (HTTP 200 with `status: "error"`, e.g. an invalid name). */
export class RegistrationRefusedError extends Error {
  override readonly name = 'RegistrationRefusedError';
  constructor(
    readonly agentId: string,
    readonly response: RegistrationResponse,
  ) {
    super(`registration of ${agentId} refused: ${response.message}`);
  }
}

type State = 'new' | 'running' | 'stopping' | 'stopped';

/**
 * An agent in the mesh: registers with the registry, keeps itself alive with
 * the fast heartbeat (`HEAD /heartbeat/{id}`: a full `POST` when the topology
 * changed (202) or the registry forgot it (410)), runs job workers under its
 * instance id, and unregisters on `stop()`.
 *
 * Its id is `<name>-<8 hex>`, new for every Agent: an agent that restarts is a
 * new instance (reference §3.2). An Agent starts once.
 *
 * @example
 * const agent = new Agent({ client, name: 'echo' });
 * agent.worker({ capability: 'echo', handler: async ({ payload }) => ({ echoed: payload }) });
 * agent.on('dependencies', (resolved) => console.log(resolved));
 * await agent.start();
 * // … on SIGTERM
 * await agent.stop();
 */
export class Agent {
  /** This instance's agent id, also its `instance_id` on every job call. */
  readonly id: string;
  /** The client, speaking for this instance (`X-Mesh-Instance-Id`). */
  readonly client: RegistryClient;
  private readonly tools: ToolRegistration[];
  private readonly workers: JobWorker<never, unknown>[] = [];
  /** One signals long-poll for all of this instance's workers. */
  private watcher: ClaimWatcher | undefined;
  private readonly listeners: { [K in keyof AgentEvents]: Set<AgentEvents[K]> } = {
    registered: new Set(),
    dependencies: new Set(),
    heartbeatFailed: new Set(),
    pendingJobs: new Set(),
  };
  private state: State = 'new';
  private loop: Promise<void> | undefined;
  private stopped: Promise<void> | undefined;
  private wakeUp: () => void = () => {};
  private toolsChanged = false;
  private lastResolved: string | undefined;
  private resolved: Record<string, ResolvedDependency[]> = {};

  /** Throws a `TypeError` naming `options.name` when the registry would refuse it. */
  constructor(private readonly o: AgentOptions) {
    if (
      typeof o.name !== 'string' ||
      !agentIdentifierPattern.test(o.name) ||
      o.name.length > maxAgentNameLength
    ) {
      throw new TypeError(
        `invalid agent name ${JSON.stringify(o.name)}: use lowercase letters, digits and '-', ` +
          `starting and ending with a letter or digit, at most ${maxAgentNameLength} characters (e.g. "echo-agent")`,
      );
    }
    if (
      o.namespace !== undefined &&
      (!agentIdentifierPattern.test(o.namespace) || o.namespace.length > maxAgentNameLength)
    ) {
      throw new TypeError(
        `invalid agent namespace ${JSON.stringify(o.namespace)}: same rule as names (lowercase letters, digits and '-')`,
      );
    }
    this.id = `${o.name}-${randomBytes(4).toString('hex')}`;
    this.client = o.client.forInstance(this.id);
    this.tools = [...(o.tools ?? [])];
    for (const capability of o.capabilities ?? []) this.addTask(capability);
  }

  /** The dependencies as the registry last resolved them, by function name (positional). */
  get dependencies(): Record<string, ResolvedDependency[]> {
    return this.resolved;
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /**
   * Subscribes to an event; returns the unsubscribe function.
   *
   * @example
   * const off = agent.on('registered', (res, why) => console.log(why, res.message));
   */
  on<K extends keyof AgentEvents>(event: K, listener: AgentEvents[K]): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  private emit<K extends keyof AgentEvents>(event: K, ...args: Parameters<AgentEvents[K]>): void {
    for (const l of this.listeners[event]) {
      try {
        (l as (...a: Parameters<AgentEvents[K]>) => void)(...args);
      } catch {
        // a listener's failure must not stop the heartbeat
      }
    }
  }

  private addTask(capability: string): boolean {
    if (this.tools.some((t) => t.capability === capability && t.kwargs?.task === true)) return false;
    this.tools.push({ function_name: capability, capability, version: '1.0.0', kwargs: { task: true } });
    return true;
  }

  /** The full heartbeat body (reference §3.4). */
  registration(): AgentRegistration {
    return {
      agent_id: this.id,
      name: this.o.name,
      agent_type: this.o.agentType ?? 'mcp_agent',
      version: this.o.version ?? '1.0.0',
      ...(this.o.description ? { description: this.o.description } : {}),
      ...(this.o.endpoint ? { http_host: this.o.endpoint.host, http_port: this.o.endpoint.port } : {}),
      namespace: this.o.namespace ?? 'default',
      runtime: this.o.runtime ?? 'typescript',
      tools: this.tools,
    };
  }

  /**
   * A job worker running under this agent's id: started with the agent (at
   * once if it already runs) and stopped before it unregisters. Its capability
   * is declared as a task tool of the agent.
   *
   * @example
   * agent.worker({ capability: 'echo', concurrency: 4, handler: async ({ payload }) => payload });
   * // typed payload and result:
   * agent.worker<{ text: string }, { echoed: string }>({
   *   capability: 'echo', handler: async ({ payload }) => ({ echoed: payload.text }) });
   */
  worker<P = Record<string, unknown>, R = unknown>(
    options: Omit<JobWorkerOptions<P, R>, 'client' | 'instanceId'>,
  ): JobWorker<P, R> {
    if (this.state === 'stopping' || this.state === 'stopped') throw new Error(`agent ${this.id} is stopped`);
    this.watcher ??= new ClaimWatcher(this.client.forInstance(this.id), this.id);
    const worker = new JobWorker<P, R>(
      { ...options, client: this.client, instanceId: this.id },
      this.watcher,
    );
    this.workers.push(worker);
    if (this.addTask(options.capability) && this.state === 'running') {
      this.toolsChanged = true;
      this.wakeUp();
    }
    if (this.state === 'running') worker.start();
    return worker;
  }

  /**
   * Registers (rejecting if the registry refuses or cannot be reached after
   * the client's retries), then heartbeats in the background and starts the
   * workers.
   */
  async start(): Promise<void> {
    if (this.state !== 'new')
      throw new Error(`agent ${this.id} starts once; create a new Agent to start again`);
    this.state = 'running';
    try {
      await this.register('start');
    } catch (err) {
      this.state = 'new';
      throw err;
    }
    this.loop = this.heartbeatLoop();
    for (const w of this.workers) w.start();
  }

  /**
   * Stops the workers (running jobs get `deadlineMs` to finish, then are
   * released) while still heartbeating, then stops the heartbeat and
   * unregisters (`DELETE /agents/{id}`), best effort.
   */
  stop(deadlineMs = 10_000): Promise<void> {
    if (this.state !== 'running') return this.stopped ?? Promise.resolve();
    this.stopped ??= (async () => {
      await Promise.all(this.workers.map((w) => w.stop(deadlineMs)));
      this.state = 'stopping';
      this.wakeUp();
      await this.loop;
      await this.client.unregister(this.id).catch(() => undefined);
      this.state = 'stopped';
    })();
    return this.stopped;
  }

  private async register(reason: RegistrationReason): Promise<void> {
    this.toolsChanged = false;
    const res = await this.client.register(this.registration());
    if (res?.status !== 'success') throw new RegistrationRefusedError(this.id, res);
    this.emit('registered', res, reason);
    const resolved = res.dependencies_resolved ?? {};
    const key = JSON.stringify(resolved);
    const changed = this.lastResolved !== undefined && key !== this.lastResolved;
    this.lastResolved = key;
    this.resolved = resolved;
    if (changed) this.emit('dependencies', resolved);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** The reference state machine (§3.4): HEAD every interval; 202 → POST; 410 → POST; failures → backoff. */
  private async heartbeatLoop(): Promise<void> {
    const interval = this.o.heartbeatIntervalMs ?? 5_000;
    const threshold = this.o.missedThreshold ?? 4;
    let failures = 0;
    let reconnects = 0;
    while (this.state === 'running') {
      const delay =
        failures >= threshold
          ? // equal jitter over 1 s × 2^n, capped at 30 s
            (() => {
              const cap = Math.min(30_000, 1_000 * 2 ** reconnects++);
              return cap / 2 + Math.random() * (cap / 2);
            })()
          : interval;
      await this.pause(delay);
      if (this.state !== 'running') break;
      try {
        if (failures >= threshold) {
          await this.register('reconnect');
        } else if (this.toolsChanged) {
          await this.register('update');
        } else {
          const beat = await this.client.fastHeartbeat(this.id);
          if (beat.pendingJobs > 0) {
            this.emit('pendingJobs', beat.pendingJobs);
            for (const w of this.workers) w.wake();
          }
          if (beat.status === 202) await this.register('topology');
          else if (beat.status === 410) await this.register('reregister');
          else if (beat.status !== 200) throw new Error(`HEAD /heartbeat/${this.id}: ${beat.status}`);
        }
        failures = 0;
        reconnects = 0;
      } catch (err) {
        failures += 1;
        this.emit('heartbeatFailed', err, failures);
      }
    }
  }
}

import type { Job } from '@mesh/protocol';
import { call } from '../support/http.ts';
import type { TappedCall, WireTap } from '../support/wire-tap.ts';
import type { ClientKind, LoadedClient, RegistryKind, StartedRegistry } from './kinds.ts';

/** The job scenarios every cell of the matrix runs, in table order. */
export const scenarios = [
  { key: 'completion', title: 'completion: submit, claim, complete, result read back' },
  { key: 'progress', title: 'progress: an update is visible to the consumer' },
  { key: 'retry', title: 'failure and retry: a retryable first attempt, the second completes' },
  { key: 'cancel', title: 'cancel: the worker learns it and nothing it writes afterwards changes the job' },
  { key: 'supersession', title: "supersession: a stale owner's write after a re-claim is refused" },
  { key: 'keep-alive', title: 'lease keep-alive: a handler silent for longer than its lease' },
] as const;

export type ScenarioKey = (typeof scenarios)[number]['key'];

/** One cell: a registry kind running, a client kind loaded, the client's traffic tapped. */
export interface Cell {
  registry: RegistryKind;
  started: StartedRegistry;
  client: ClientKind;
  loaded: LoadedClient;
  /** Unique per cell, lower case: prefixes capabilities and agent names. */
  prefix: string;
  /** The client under test talks to the registry through this tap. */
  tap: WireTap;
}

/** Runs one scenario in a cell and says which semantics it saw (throws when the scenario fails). */
export type Scenario = (cell: Cell) => Promise<string>;

/** The job as the registry has it, read directly (not through the client under test). */
export async function observe(cell: Cell, id: string): Promise<Job> {
  const { status, body } = await call(cell.started.url, 'GET', `/jobs/${id}`);
  if (status !== 200) throw new Error(`GET /jobs/${id}: ${status} ${JSON.stringify(body)}`);
  return body as Job;
}

/** What the consumer should find unchanged once a job ended under a worker. */
export const settledFields = (j: Job) => ({
  status: j.status,
  result: j.result,
  error: j.error,
  progress: j.progress,
  progress_message: j.progress_message,
  owner_instance_id: j.owner_instance_id,
  claim_epoch: j.claim_epoch,
  attempt_count: j.attempt_count,
});

// biome-ignore lint/suspicious/noExplicitAny: raw wire bodies
export type WireDelta = Record<string, any> & { id: string };

/** The owner deltas for `id` that went through `tap`, each with the batch's answer for it. */
export function deltasFor(
  tap: WireTap,
  id: string,
): { call: TappedCall; delta: WireDelta; rejected: string | undefined }[] {
  return tap.calls
    .filter((c) => c.method === 'POST' && c.path === '/jobs/batch' && Array.isArray(c.body?.deltas))
    .flatMap((c) =>
      (c.body.deltas as WireDelta[])
        .filter((d) => d.id === id)
        .map((delta) => ({
          call: c,
          delta,
          rejected: (c.response?.rejected as { id: string; reason: string }[] | undefined)?.find(
            (r) => r.id === id,
          )?.reason,
        })),
    );
}

/** A delta that only renews: nothing but the id (and the epoch). */
export const isEmptyDelta = (d: WireDelta): boolean =>
  Object.keys(d).every((k) => k === 'id' || k === 'claim_epoch');

/** `POST /jobs/leases` calls that renewed `id`. */
export const leaseRenewalsFor = (tap: WireTap, id: string): TappedCall[] =>
  tap.calls.filter(
    (c) =>
      c.method === 'POST' &&
      c.path === '/jobs/leases' &&
      (c.body?.leases as { id: string }[] | undefined)?.some((l) => l.id === id),
  );

/** "fenced (claim_epoch 1)" or "epoch-less (owner-only)": how a delta was fenced on the wire. */
export const fencing = (d: WireDelta | undefined): string =>
  d && d.claim_epoch !== undefined && d.claim_epoch !== null
    ? `fenced (claim_epoch ${d.claim_epoch})`
    : 'epoch-less (owner-only)';

/** A promise and its resolve function. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve: (v: T) => void = () => {};
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

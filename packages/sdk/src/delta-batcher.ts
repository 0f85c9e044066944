import { type BatchResponse, type ClaimedJob, type JobDelta, limits } from '@mesh/protocol';

/** One delta's own answer out of a shared `POST /jobs/batch`. */
export interface DeltaOutcome {
  accepted: boolean;
  /** The registry's refusal of this delta, if it was refused. */
  rejected?: BatchResponse['rejected'][number];
}

/** A claim sent beside deltas (feature `claim-beside-deltas`). */
export interface BesideClaim {
  capability: string;
  max: number;
}

/** What a batch with a claim beside it answered about the claim. */
export interface BesideAnswer {
  jobs: ClaimedJob[];
  /** The replica drains: nothing was claimed. */
  draining: boolean;
}

interface Pending {
  delta: JobDelta;
  resolve: (o: DeltaOutcome) => void;
  reject: (err: unknown) => void;
}

interface PendingClaim {
  claim: BesideClaim;
  resolve: (a: BesideAnswer | undefined) => void;
  reject: (err: unknown) => void;
}

/**
 * Sends deltas (and a claim beside them, when given) in one `POST
 * /jobs/batch`; `claimed`/`draining` are about that claim, and
 * `claimRefused` the registry's refusal of it (the deltas were then sent
 * alone).
 */
export type SendBatch = (
  deltas: JobDelta[],
  claim?: BesideClaim,
) => Promise<BatchResponse & { draining?: boolean; claimRefused?: unknown }>;

/**
 * Owner deltas of one agent instance made in the same turn of the event loop
 * go to the registry in one `POST /jobs/batch`: a worker whose eight jobs end
 * together sends one request, not eight (issue 17: batch claims at 30× MCP
 * Mesh need the completions batched too). Nothing waits longer than that
 * turn: a delta made alone goes alone, at once. Each delta gets its own
 * answer (the registry fences and answers every delta apart); a request that
 * gets no answer rejects every delta in it, and each caller retries its own.
 * A request never carries one job twice, nor more than `limits.maxDeltas`.
 *
 * A claim asked in the same turn (`claim`, where the registry offers
 * `claim-beside-deltas`) rides in the last such request: a worker whose
 * handler just returned sends its outcome and asks for its next job in one
 * exchange. With no delta to ride on (or a claim already riding) it answers
 * `undefined` at the end of the turn, and the worker claims on its own.
 */
export class DeltaBatcher {
  private queue: Pending[] = [];
  private claimAsk: PendingClaim | undefined;
  private scheduled = false;

  /** `send` takes a claim only where the registry offers `claim-beside-deltas` (RegistryClient.claimBeside). */
  constructor(private readonly send: SendBatch) {}

  write(delta: JobDelta): Promise<DeltaOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ delta, resolve, reject });
      this.schedule();
    });
  }

  /** Claims beside this turn's deltas; `undefined`: it could not ride (see the class). */
  claim(claim: BesideClaim): Promise<BesideAnswer | undefined> {
    if (this.claimAsk) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.claimAsk = { claim, resolve, reject };
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const all = this.queue;
    this.queue = [];
    const ask = this.claimAsk;
    this.claimAsk = undefined;
    if (all.length === 0) {
      ask?.resolve(undefined);
      return;
    }
    const chunks: Pending[][] = [];
    let chunk: Pending[] = [];
    let ids = new Set<string>();
    for (const p of all) {
      const id = p.delta.id ?? '';
      if (chunk.length === limits.maxDeltas || ids.has(id)) {
        chunks.push(chunk);
        chunk = [];
        ids = new Set();
      }
      chunk.push(p);
      ids.add(id);
    }
    chunks.push(chunk);
    chunks.forEach((c, i) => {
      void this.deliver(c, i === chunks.length - 1 ? ask : undefined);
    });
  }

  private async deliver(chunk: Pending[], ask: PendingClaim | undefined): Promise<void> {
    try {
      const res = await this.send(
        chunk.map((p) => p.delta),
        ask?.claim,
      );
      const refused = new Map((res.rejected ?? []).map((r) => [r.id, r]));
      for (const p of chunk) {
        const rejected = refused.get(p.delta.id ?? '');
        p.resolve(rejected ? { accepted: false, rejected } : { accepted: true });
      }
      if (res.claimRefused) ask?.reject(res.claimRefused);
      else ask?.resolve({ jobs: res.claimed ?? [], draining: res.draining === true });
    } catch (err) {
      for (const p of chunk) p.reject(err);
      ask?.reject(err);
    }
  }
}

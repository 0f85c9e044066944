import { type BatchResponse, type JobDelta, limits } from '@mesh/protocol';

/** One delta's own answer out of a shared `POST /jobs/batch`. */
export interface DeltaOutcome {
  accepted: boolean;
  /** The registry's refusal of this delta, if it was refused. */
  rejected?: BatchResponse['rejected'][number];
}

interface Pending {
  delta: JobDelta;
  resolve: (o: DeltaOutcome) => void;
  reject: (err: unknown) => void;
}

/**
 * Owner deltas of one agent instance made in the same turn of the event loop
 * go to the registry in one `POST /jobs/batch`: a worker whose eight jobs end
 * together sends one request, not eight (issue 17: batch claims at 30× MCP
 * Mesh need the completions batched too). Nothing waits longer than that
 * turn: a delta made alone goes alone, at once. Each delta gets its own
 * answer (the registry fences and answers every delta apart); a request that
 * gets no answer rejects every delta in it, and each caller retries its own.
 * A request never carries one job twice, nor more than `limits.maxDeltas`.
 */
export class DeltaBatcher {
  private queue: Pending[] = [];
  private scheduled = false;

  constructor(private readonly send: (deltas: JobDelta[]) => Promise<BatchResponse>) {}

  write(delta: JobDelta): Promise<DeltaOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ delta, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    this.scheduled = false;
    const all = this.queue;
    this.queue = [];
    let chunk: Pending[] = [];
    let ids = new Set<string>();
    for (const p of all) {
      const id = p.delta.id ?? '';
      if (chunk.length === limits.maxDeltas || ids.has(id)) {
        void this.deliver(chunk);
        chunk = [];
        ids = new Set();
      }
      chunk.push(p);
      ids.add(id);
    }
    if (chunk.length) void this.deliver(chunk);
  }

  private async deliver(chunk: Pending[]): Promise<void> {
    try {
      const res = await this.send(chunk.map((p) => p.delta));
      const refused = new Map((res.rejected ?? []).map((r) => [r.id, r]));
      for (const p of chunk) {
        const rejected = refused.get(p.delta.id ?? '');
        p.resolve(rejected ? { accepted: false, rejected } : { accepted: true });
      }
    } catch (err) {
      for (const p of chunk) p.reject(err);
    }
  }
}

/**
 * The agent of docs/writing-an-agent.md: one process, five workers, one per
 * task of the guide. Every line it prints starts with the capability.
 *
 *   pnpm tsx examples/writing-an-agent/agent.ts      (registry at MESH_REGISTRY_URL, default http://127.0.0.1:8000)
 */
import { Agent, NonRetryableError, RegistryClient } from '@mesh/sdk';
import { z } from 'zod';

const url = process.env.MESH_REGISTRY_URL ?? 'http://127.0.0.1:8000';
const client = new RegistryClient({ urls: url.split(',') });
const agent = new Agent({ client, name: 'guide', version: '1.0.0' });
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

// 1. Progress: `progress()` sets the job's latest progress (a consumer polling it may
//    skip values); an event per step (`sendEvent`) reaches the consumer every time.
agent.worker<{ steps: number }, { done: number }>({
  capability: 'guide-progress',
  handler: async ({ payload, progress, sendEvent }) => {
    for (let i = 1; i <= payload.steps; i++) {
      await sleep(100);
      await progress(i / payload.steps, `step ${i} of ${payload.steps}`);
      await sendEvent('step', { step: i, of: payload.steps });
    }
    return { done: payload.steps };
  },
});

// 2. Cancel: a long handler passes `signal` on and stops when it fires.
agent.worker<{ seconds: number }>({
  capability: 'guide-slow',
  handler: async ({ id, payload, signal }) => {
    console.log(`guide-slow: started ${id}`);
    await sleep(payload.seconds * 1000, signal);
    if (signal.aborted) {
      console.log(`guide-slow: ${id} stopped: ${(signal.reason as Error).message}`);
      return undefined; // nothing is committed after the signal fired
    }
    return { slept: payload.seconds };
  },
});

// 3. A retried failure: a thrown error is retried while attempts remain;
//    a NonRetryableError fails the job at once.
agent.worker<{ failAttempts: number; fatal?: boolean }>({
  capability: 'guide-flaky',
  handler: async ({ payload, attempt }) => {
    if (payload.fatal) throw new NonRetryableError('bad payload: nothing to retry');
    if (attempt <= payload.failAttempts) throw new Error(`upstream timeout (attempt ${attempt})`);
    return { succeededOnAttempt: attempt };
  },
});

// 4. requestInput: ask the submitter, and check the answer against a schema.
const Approval = z.object({ approved: z.boolean(), note: z.string().max(200).optional() });
agent.worker<{ amount: number }>({
  capability: 'guide-approve',
  handler: async ({ payload, requestInput }) => {
    const answer = await requestInput(`Approve a payment of $${payload.amount}?`, { schema: Approval });
    // `answer` is typed { approved: boolean; note?: string }; an answer that does not
    // match rejects with InputValidationError (not retried: the job fails with its message).
    return answer.approved ? { paid: payload.amount, note: answer.note ?? '' } : { paid: 0 };
  },
});

// 5. kill -9 mid-job: a job of steps, re-run from the start by another agent.
agent.worker<{ steps: number }>({
  capability: 'guide-steps',
  handler: async ({ id, payload, attempt, progress, signal }) => {
    console.log(`guide-steps: started ${id} attempt ${attempt}`);
    for (let i = 1; i <= payload.steps && !signal.aborted; i++) {
      await sleep(250, signal);
      await progress(i / payload.steps, `step ${i}`);
    }
    return { steps: payload.steps, attempt };
  },
});

await agent.start();
console.log(`guide: agent ${agent.id} ready (pid ${process.pid})`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    await agent.stop(); // finishes (or gives back) running jobs, then unregisters
    process.exit(0);
  });
}

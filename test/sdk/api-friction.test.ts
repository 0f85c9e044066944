import {
  Agent,
  type JobContext,
  type JobHandler,
  JobWorker,
  RegistryClient,
  RegistryUnreachableError,
} from '@mesh/sdk';
import { freePort } from '@mesh/testkit';
import { describe, expect, expectTypeOf, it } from 'vitest';

/** Issue 19, item 5: what an author runs into before any job runs. */
describe('SDK API', () => {
  const client = new RegistryClient({ urls: ['http://127.0.0.1:9'], attempts: 1 });

  it('refuses an invalid agent name in new Agent(), naming it', () => {
    for (const name of ['Echo', 'echo_agent', '-echo', 'echo-', '', 'a'.repeat(64)]) {
      expect(() => new Agent({ client, name }), name).toThrow(
        new RegExp(`invalid agent name ${JSON.stringify(name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
      );
    }
    expect(new Agent({ client, name: 'echo-2' }).id).toMatch(/^echo-2-[0-9a-f]{8}$/);
    expect(() => new Agent({ client, name: 'echo', namespace: 'Prod' })).toThrow(
      /invalid agent namespace "Prod"/,
    );
  });

  it('names the URL and the cause when the registry cannot be reached', async () => {
    const port = await freePort();
    const down = new RegistryClient({ urls: [`http://127.0.0.1:${port}`], attempts: 2 });
    const err = await down.getJob('00000000-0000-0000-0000-000000000000').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryUnreachableError);
    const e = err as RegistryUnreachableError;
    expect(e.url).toBe(`http://127.0.0.1:${port}/jobs/00000000-0000-0000-0000-000000000000`);
    expect(e.message).toContain(`GET http://127.0.0.1:${port}/jobs/`);
    expect(e.message).toContain('ECONNREFUSED');
    // Node's network error, with its code (not fetch's TypeError wrapping it: the SDK uses node:http).
    expect((e.cause as { code?: string }).code).toBe('ECONNREFUSED');
    // Not retried: a submit is not safe to repeat, and says so the same way.
    const submit = await down
      .submit({ capability: 'x', submitted_by: 't', submitted_payload: {} })
      .catch((x: unknown) => x);
    expect(submit).toBeInstanceOf(RegistryUnreachableError);
    expect((submit as RegistryUnreachableError).message).toMatch(/^POST http:\/\/127\.0\.0\.1:\d+\/jobs: /);
  });

  it('types payload and result, and untyped handlers keep compiling', () => {
    const typed: JobHandler<{ text: string }, { echoed: string }> = async ({ payload }) => ({
      echoed: payload.text,
    });
    const worker = new JobWorker<{ text: string }, { echoed: string }>({
      client,
      instanceId: 'typed-1',
      capability: 'typed',
      handler: typed,
    });
    expectTypeOf(worker).toEqualTypeOf<JobWorker<{ text: string }, { echoed: string }>>();
    const agent = new Agent({ client, name: 'typed' });
    agent.worker<{ n: number }, number>({
      capability: 'double',
      handler: async ({ payload }) => payload.n * 2,
    });
    // The default: a record payload, any result.
    agent.worker({ capability: 'echo', handler: async ({ payload }) => payload });
    expectTypeOf<JobContext['payload']>().toEqualTypeOf<Record<string, unknown>>();
  });
});

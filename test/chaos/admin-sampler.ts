import { runSideProcess } from '../support/side-process.ts';

/**
 * Times `GET <admin url>/admin/drain` every 200 ms until stdin closes; its
 * result: `{"ms": [...], "timeouts": n}` (30 s per request). Run by
 * `overload.test.ts` as a process of its own (test/support/side-process.ts),
 * so that the load generator's busy event loop is not timed into the admin
 * answers: `node --import tsx admin-sampler.ts http://127.0.0.1:ADMIN_PORT`.
 */
const base = process.argv[2];
if (!base) throw new Error('usage: admin-sampler.ts <admin url>');

await runSideProcess(async (running) => {
  const ms: number[] = [];
  let timeouts = 0;
  while (running()) {
    const t = performance.now();
    try {
      const res = await fetch(`${base}/admin/drain`, { signal: AbortSignal.timeout(30_000) });
      await res.text();
      ms.push(Math.round(performance.now() - t));
    } catch {
      timeouts += 1;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { ms, timeouts };
});

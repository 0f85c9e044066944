import { EventEmitter } from 'node:events';
import type { Sql } from '@mesh/db';
import type { Logger } from '../logger.ts';
import { jobChannel } from './jobs.ts';

/**
 * Wakes long-polls when something happens to a job (an event, a cancel, a
 * reclaim, a sweep), on whichever replica it happened: statements that change
 * a job call `pg_notify('mesh_jobs', id)`, and every replica LISTENs. Waiters
 * also time out on their own, so a lost notification only delays an answer.
 */
export class JobSignals {
  private readonly emitter = new EventEmitter();
  private unlisten: (() => Promise<void>) | undefined;
  private readonly closed = new AbortController();

  constructor(
    private readonly sql: Sql,
    private readonly logger: Logger,
  ) {
    this.emitter.setMaxListeners(0);
  }

  async start(): Promise<void> {
    const { unlisten } = await this.sql.listen(
      jobChannel,
      (jobId) => this.emitter.emit(jobId),
      () => this.logger.debug({ channel: jobChannel }, 'listening for job notifications'),
    );
    this.unlisten = unlisten;
  }

  /** True once shutdown began: long-polls should answer now. */
  get closing(): boolean {
    return this.closed.signal.aborted;
  }

  /**
   * Resolves `signal` when `jobId` (or any of several ids) is signalled,
   * `timeout` after `ms`, `abort` on abort or shutdown.
   */
  wait(
    jobId: string | readonly string[],
    ms: number,
    signal?: AbortSignal,
  ): Promise<'signal' | 'timeout' | 'abort'> {
    if (signal?.aborted || this.closing) return Promise.resolve('abort');
    if (ms <= 0) return Promise.resolve('timeout');
    const ids = typeof jobId === 'string' ? [jobId] : [...new Set(jobId)];
    return new Promise((resolve) => {
      const finish = (how: 'signal' | 'timeout' | 'abort') => () => {
        clearTimeout(timer);
        for (const id of ids) this.emitter.off(id, onSignal);
        signal?.removeEventListener('abort', onAbort);
        this.closed.signal.removeEventListener('abort', onAbort);
        resolve(how);
      };
      const onSignal = finish('signal');
      const onAbort = finish('abort');
      const timer = setTimeout(finish('timeout'), ms);
      for (const id of ids) this.emitter.once(id, onSignal);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.closed.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Answers every waiting long-poll now (shutdown). */
  async stop(): Promise<void> {
    this.closed.abort();
    await this.unlisten?.().catch(() => {});
  }
}

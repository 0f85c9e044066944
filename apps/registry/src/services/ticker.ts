/**
 * Runs `task` every `intervalMs`, never overlapping itself; a failure is
 * reported and the next tick comes as usual. `stop()` waits for a tick in
 * progress, so nothing touches the pool after shutdown closed it.
 */
export class Ticker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly task: () => Promise<unknown>,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** `firstDelayMs` (default: one interval) lets replicas spread their ticks apart. */
  start(firstDelayMs = this.intervalMs): void {
    const tick = () => {
      this.running = this.task()
        .then(() => undefined, this.onError)
        .finally(() => {
          this.running = undefined;
          if (this.timer) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, firstDelayMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}

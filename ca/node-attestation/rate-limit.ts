import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';

/**
 * A fixed-window count per key, successes included (FailureLimiter counts only failures): at most
 * `max` takes per key per window, then `429 rate_limited` with the seconds left. Per process.
 */
export class WindowLimiter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly max: number,
    private readonly windowSeconds: number,
    private readonly what: string,
    private readonly maxKeys = 10_000,
  ) {}

  take(key: string): void {
    const now = this.clock.now().getTime();
    const w = this.windows.get(key);
    if (w && w.resetAt > now) {
      if (w.count >= this.max) {
        throw new CairnError('rate_limited', `too many ${this.what} from this address; retry later`, { details: { retryAfterSeconds: Math.ceil((w.resetAt - now) / 1000) } });
      }
      w.count++;
      return;
    }
    if (this.windows.size >= this.maxKeys) {
      for (const [k, v] of this.windows) if (v.resetAt <= now) this.windows.delete(k);
      if (this.windows.size >= this.maxKeys) this.windows.delete(this.windows.keys().next().value!);
    }
    this.windows.set(key, { count: 1, resetAt: now + this.windowSeconds * 1000 });
  }
}

import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';

/**
 * Slows down token guessing: after `maxFailures` failed redemptions from one source within
 * `windowSeconds`, that source is refused with 429 until the window passes. Per process; the
 * token space (256-bit secrets) is the real defence, this keeps logs and the database quiet.
 */
export class FailureLimiter {
  private readonly failures = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly maxFailures = 10,
    private readonly windowSeconds = 60,
    private readonly maxSources = 10_000,
  ) {}

  check(source: string): void {
    const f = this.failures.get(source);
    const now = this.clock.now().getTime();
    if (!f) return;
    if (f.resetAt <= now) {
      this.failures.delete(source);
      return;
    }
    if (f.count >= this.maxFailures) {
      throw new CairnError('rate_limited', 'too many failed token redemptions from this address; retry later', {
        details: { retryAfterSeconds: Math.ceil((f.resetAt - now) / 1000) },
      });
    }
  }

  fail(source: string): void {
    const now = this.clock.now().getTime();
    const f = this.failures.get(source);
    if (f && f.resetAt > now) {
      f.count++;
      return;
    }
    if (this.failures.size >= this.maxSources) {
      for (const [k, v] of this.failures) if (v.resetAt <= now) this.failures.delete(k);
      if (this.failures.size >= this.maxSources) this.failures.delete(this.failures.keys().next().value!);
    }
    this.failures.set(source, { count: 1, resetAt: now + this.windowSeconds * 1000 });
  }
}

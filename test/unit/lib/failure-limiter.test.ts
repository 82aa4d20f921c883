import { describe, expect, it } from 'vitest';
import { FailureLimiter } from '../../../ca/enrollment/failure-limiter.js';
import { CairnError } from '../../../lib/errors.js';
import { FakeClock } from '../../support/clock.js';

describe('failed-redemption limiter', () => {
  it('refuses a source after N failures in the window, per source, and forgives after it', () => {
    const clock = new FakeClock();
    const limiter = new FailureLimiter(clock, 3, 60);
    for (let i = 0; i < 3; i++) {
      limiter.check('a');
      limiter.fail('a');
    }
    expect(() => limiter.check('a')).toThrow(CairnError);
    try {
      limiter.check('a');
    } catch (err) {
      expect((err as CairnError).code).toBe('rate_limited');
      expect((err as CairnError).details).toEqual({ retryAfterSeconds: 60 });
    }
    expect(() => limiter.check('b')).not.toThrow();
    clock.advance(61);
    expect(() => limiter.check('a')).not.toThrow();
  });

  it('stays bounded in memory', () => {
    const clock = new FakeClock();
    const limiter = new FailureLimiter(clock, 3, 60, 100);
    for (let i = 0; i < 1000; i++) limiter.fail(`10.0.${i >> 8}.${i & 255}`);
    expect((limiter as unknown as { failures: Map<string, unknown> }).failures.size).toBeLessThanOrEqual(100);
  });
});

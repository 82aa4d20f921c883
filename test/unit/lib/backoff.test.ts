import { describe, expect, it } from 'vitest';
import { FailureStreak } from '../../../lib/backoff.js';
import { Resources } from '../../../lib/resources.js';

describe('FailureStreak', () => {
  it('backs off exponentially up to the cap, with jitter in [½, 1) of the nominal delay', () => {
    const low = new FailureStreak({ baseMs: 1000, capMs: 30_000, jitter: () => 0 });
    const high = new FailureStreak({ baseMs: 1000, capMs: 30_000, jitter: () => 0.999999 });
    const lows = Array.from({ length: 8 }, (_, i) => low.failed(i * 100_000).retryInMs);
    const highs = Array.from({ length: 8 }, (_, i) => high.failed(i * 100_000).retryInMs);
    expect(lows).toEqual([500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000]);
    expect(highs).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  });

  it('reports the first failure of a streak once, gates retries until the backoff passed, and sums the streak up when it ends', () => {
    const s = new FailureStreak({ baseMs: 1000, capMs: 8000, jitter: () => 0.999999 });
    expect(s.succeeded(0)).toBeUndefined(); // no streak, no summary
    expect(s.due(0)).toBe(true);
    const first = s.failed(10_000);
    expect(first).toEqual({ first: true, attempts: 1, retryInMs: 1000 });
    expect(s.failing).toBe(true);
    expect(s.due(10_500)).toBe(false);
    expect(s.due(11_000)).toBe(true);
    expect(s.failed(11_000).first).toBe(false);
    expect(s.failed(13_000).attempts).toBe(3);
    expect(s.succeeded(20_000)).toEqual({ failedForMs: 10_000, attempts: 3 });
    expect(s.failing).toBe(false);
    expect(s.due(20_000)).toBe(true);
    expect(s.failed(30_000)).toEqual({ first: true, attempts: 1, retryInMs: 1000 }); // a new streak starts over
  });

  it('does not stall when the clock is stepped back', () => {
    const s = new FailureStreak({ baseMs: 1000, capMs: 8000, jitter: () => 0.999999 });
    for (let i = 0; i < 5; i++) s.failed(1_000_000);
    expect(s.due(1_000_000)).toBe(false);
    expect(s.due(1_000_000 - 3_600_000)).toBe(true); // an hour back: the next attempt is not an hour away
  });
});

describe('Resources', () => {
  it('closes newest first, each once, and keeps closing past a failure', async () => {
    const order: string[] = [];
    const failures: string[] = [];
    const r = new Resources();
    r.defer('pool', () => order.push('pool'));
    r.defer('listener', async () => {
      order.push('listener');
      throw new Error('boom');
    });
    r.defer('loop', () => order.push('loop'));
    await r.close((name) => failures.push(name));
    await r.close();
    expect(order).toEqual(['loop', 'listener', 'pool']);
    expect(failures).toEqual(['listener']);
  });
});

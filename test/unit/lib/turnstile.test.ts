import { describe, expect, it } from 'vitest';
import { Turnstile } from '../../../lib/turnstile.js';

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Turnstile', () => {
  it('lets callers through in order, at most perTurn per turn of the event loop', async () => {
    const gate = new Turnstile(3);
    const passed: number[] = [];
    const turns: number[][] = [];
    const all = Array.from({ length: 8 }, (_, i) => gate.pass().then(() => passed.push(i)));
    expect(gate.waiting).toBe(8);
    while (passed.length < 8) {
      const before = passed.length;
      await nextTurn();
      if (passed.length > before) turns.push(passed.slice(before));
    }
    await Promise.all(all);
    expect(turns.flat()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const t of turns) expect(t.length).toBeLessThanOrEqual(3);
    expect(turns.length).toBeGreaterThanOrEqual(3);
    expect(gate.waiting).toBe(0);
  });

  it('starts again after it has emptied, and refuses a slice size that is not a positive integer', async () => {
    const gate = new Turnstile(2);
    await Promise.all([gate.pass(), gate.pass(), gate.pass()]);
    let later = false;
    await gate.pass().then(() => (later = true));
    expect(later).toBe(true);
    expect(() => new Turnstile(0)).toThrow(RangeError);
    expect(() => new Turnstile(1.5)).toThrow(RangeError);
  });
});

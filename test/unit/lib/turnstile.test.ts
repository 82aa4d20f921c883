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

  it('keeps the order and the count when the queue is compacted under steady load', async () => {
    const gate = new Turnstile(700);
    const passed: number[] = [];
    const first = Array.from({ length: 1500 }, (_, i) => gate.pass().then(() => passed.push(i)));
    await nextTurn();
    // callers keep arriving while earlier ones are let through, so the queue never empties
    const more = Array.from({ length: 1500 }, (_, i) => gate.pass().then(() => passed.push(1500 + i)));
    expect(gate.waiting).toBe(3000 - passed.length);
    await nextTurn(); // the second slice: past the compaction threshold
    expect(passed.length).toBe(1400);
    expect(gate.waiting).toBe(1600);
    await Promise.all([...first, ...more]);
    expect(passed).toEqual(Array.from({ length: 3000 }, (_, i) => i));
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

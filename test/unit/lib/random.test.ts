import { describe, expect, it } from 'vitest';
import { randomSerial, randomSerials, systemRandom, type Random } from '../../../lib/random.js';

describe('certificate serials', () => {
  it('are 16 bytes, positive (top bit clear) and never zero, even from an all-ones or all-zeros source', () => {
    for (const fill of [0x00, 0xff]) {
      const source: Random = { bytes: (n) => Buffer.alloc(n, fill) };
      for (const serial of [randomSerial(source), ...randomSerials(source, 3)]) {
        expect(serial).toHaveLength(16);
        expect(serial[0]! & 0x80).toBe(0);
        expect(serial[0]! & 0x01).toBe(1);
      }
    }
  });

  it('a batch draws once and gives each serial its own bytes', () => {
    const draws: number[] = [];
    const source: Random = { bytes: (n) => (draws.push(n), systemRandom.bytes(n)) };
    const serials = randomSerials(source, 500);
    expect(draws).toEqual([16 * 500]);
    expect(new Set(serials.map((s) => s.toString('hex'))).size).toBe(500);
    serials[0]!.fill(0);
    expect(serials[1]!.equals(Buffer.alloc(16))).toBe(false);
  });
});

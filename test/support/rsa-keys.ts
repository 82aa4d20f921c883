import { createPrivateKey, createPublicKey, generatePrimeSync, randomBytes, type KeyObject } from 'node:crypto';

/**
 * RSA keys with the public exponent of our choosing, which node:crypto will not generate: e.g. a
 * 3071-bit exponent, whose every public operation (a CSR signature check) costs milliseconds.
 * Built from two primes with BigInt arithmetic and imported as a JWK; the keys are valid, so the
 * CSRs they sign verify.
 */
export function rsaKeyWithExponent(modulusBits: number, exponent: bigint | 'huge'): { privateKey: KeyObject; publicKey: KeyObject } {
  for (;;) {
    const p = generatePrimeSync(modulusBits / 2, { bigint: true });
    const q = generatePrimeSync(modulusBits / 2, { bigint: true });
    if (p === q) continue;
    const n = p * q;
    const phi = (p - 1n) * (q - 1n);
    const e = exponent === 'huge' ? hugeOddBelow(n) : exponent;
    if (gcd(e, phi) !== 1n) continue;
    const d = modInverse(e, phi);
    const b64 = (v: bigint): string => toBytes(v).toString('base64url');
    const jwk = { kty: 'RSA', n: b64(n), e: b64(e), d: b64(d), p: b64(p), q: b64(q), dp: b64(d % (p - 1n)), dq: b64(d % (q - 1n)), qi: b64(modInverse(q, p)) };
    const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
    return { privateKey, publicKey: createPublicKey(privateKey) };
  }
}

function hugeOddBelow(n: bigint): bigint {
  const bits = n.toString(2).length - 1;
  const bytes = randomBytes(Math.ceil(bits / 8));
  let e = BigInt('0x' + bytes.toString('hex')) & ((1n << BigInt(bits)) - 1n);
  e |= 1n << BigInt(bits - 1); // full size
  return e | 1n;
}

function gcd(a: bigint, b: bigint): bigint {
  while (b) [a, b] = [b, a % b];
  return a;
}

function modInverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [a % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1) {
    const k = r0 / r1;
    [r0, r1] = [r1, r0 - k * r1];
    [s0, s1] = [s1, s0 - k * s1];
  }
  return ((s0 % m) + m) % m;
}

function toBytes(v: bigint): Buffer {
  const hex = v.toString(16);
  return Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex');
}

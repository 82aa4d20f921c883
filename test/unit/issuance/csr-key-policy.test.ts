import * as crypto from 'node:crypto';
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { verifyCsr } from '../../../ca/issuance/csr.js';
import { CairnError } from '../../../lib/errors.js';
import { bitString, explicit, oid, seq, smallInteger } from '../../../lib/der.js';
import { createCsr } from '../../../lib/pkcs10.js';
import { rsaKeyWithExponent } from '../../support/rsa-keys.js';

// Every signature check the CSR code makes goes through this counter (pass-through spies on node:crypto,
// which checks RSA keys, and on the native check for EC keys).
const verifications = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:crypto', async (importOriginal) => {
  const original = await importOriginal<typeof crypto>();
  return {
    ...original,
    verify: (...args: Parameters<typeof original.verify>) => {
      verifications.count++;
      return (original.verify as (...a: unknown[]) => unknown)(...args);
    },
  };
});

vi.mock('../../../ca/issuance/ecdsa.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../../ca/issuance/ecdsa.js')>();
  return {
    ...original,
    verifyEcdsa: (...args: Parameters<typeof original.verifyEcdsa>) => {
      verifications.count++;
      return original.verifyEcdsa(...args);
    },
  };
});

function refusal(der: Buffer): { code: string | undefined; verified: number } {
  const before = verifications.count;
  let code: string | undefined;
  try {
    verifyCsr(der);
  } catch (err) {
    code = err instanceof CairnError ? err.code : `not-cairn: ${(err as Error).message}`;
  }
  return { code, verified: verifications.count - before };
}

/** createCsr signs only with the curves we accept; this one signs with any EC key. */
function createCsrAnyCurve(privateKey: crypto.KeyObject, publicKey: crypto.KeyObject): Buffer {
  const info = seq(smallInteger(0), seq(), publicKey.export({ format: 'der', type: 'spki' }), explicit(0, Buffer.alloc(0)));
  return seq(info, seq(oid('1.2.840.10045.4.3.2')), bitString(crypto.sign('sha256', info, privateKey)));
}

const corrupt = (der: Buffer): Buffer => {
  const copy = Buffer.from(der);
  copy[copy.length - 5]! ^= 0x01;
  return copy;
};

describe('what a CSR key may be, decided before any signature is checked', () => {
  // A 3072-bit modulus with a 3071-bit exponent: OpenSSL bounds the exponent only above 3072 bits,
  // and each public operation costs milliseconds. node:crypto would verify this CSR as valid.
  const huge = rsaKeyWithExponent(3072, 'huge');
  const hugeCsr = createCsr(huge.privateKey, huge.publicKey);

  it('the huge-exponent CSR is a valid CSR (its signature verifies) — and it is refused without a verification', () => {
    expect(huge.publicKey.asymmetricKeyDetails!.publicExponent! > 2n ** 3000n).toBe(true);
    expect(refusal(hugeCsr)).toEqual({ code: 'unsupported_key_type', verified: 0 });
  });

  it('the refusal does not depend on the signature: a broken one gets the same answer', () => {
    expect(refusal(corrupt(hugeCsr))).toEqual({ code: 'unsupported_key_type', verified: 0 });
  });

  it.each([[3n], [17n], [0x10000001n]])('RSA exponent %s is refused too (only 65537)', (e) => {
    const key = rsaKeyWithExponent(2048, e);
    expect(refusal(createCsr(key.privateKey, key.publicKey))).toEqual({ code: 'unsupported_key_type', verified: 0 });
  });

  it('sizes outside P-256, P-384 and RSA 2048–4096 are refused without a verification', () => {
    const small = rsaKeyWithExponent(1024, 65537n);
    expect(refusal(createCsr(small.privateKey, small.publicKey))).toEqual({ code: 'unsupported_key_type', verified: 0 });
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    expect(refusal(createCsrAnyCurve(k1.privateKey, k1.publicKey))).toEqual({ code: 'unsupported_key_type', verified: 0 });
  });

  it('accepted keys cost exactly one verification, and a bad signature is still caught', () => {
    for (const pair of [
      generateKeyPairSync('ec', { namedCurve: 'P-256' }),
      generateKeyPairSync('ec', { namedCurve: 'P-384' }),
      generateKeyPairSync('rsa', { modulusLength: 2048 }),
      rsaKeyWithExponent(4096, 65537n),
    ]) {
      const der = createCsr(pair.privateKey, pair.publicKey);
      expect(refusal(der)).toEqual({ code: undefined, verified: 1 });
      expect(refusal(corrupt(der))).toEqual({ code: 'csr_signature_invalid', verified: 1 });
    }
  });
});

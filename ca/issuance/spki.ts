import { createPublicKey, hash, type KeyObject } from 'node:crypto';
import { children, content, decodeOid, expect, raw, readWhole, Tag, type Node } from '../../lib/der.js';
import { CairnError } from '../../lib/errors.js';
import type { EcCurve } from './ecdsa.js';

/** Key types a CSR may carry: P-256, P-384, RSA 2048–4096 bits with exponent 65537. */
export type SubjectKeyType = 'ec-p256' | 'ec-p384' | 'rsa';

export interface SubjectPublicKey {
  /** The SubjectPublicKeyInfo DER, copied verbatim into the certificate. */
  readonly spki: Buffer;
  readonly keyType: SubjectKeyType;
  readonly rsaBits?: number;
  /** The BIT STRING payload (without the unused-bits byte): what RFC 5280 key identifiers hash. */
  readonly keyBits: Buffer;
}

const EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const RSA_ENCRYPTION = '1.2.840.113549.1.1.1';
const CURVES: Record<string, SubjectKeyType> = { '1.2.840.10045.3.1.7': 'ec-p256', '1.3.132.0.34': 'ec-p384' };
const CURVE_NAMES: Partial<Record<SubjectKeyType, EcCurve>> = { 'ec-p256': 'P-256', 'ec-p384': 'P-384' };
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 4096;
/** F4: the only public exponent we accept (what every toolkit generates by default). */
const RSA_EXPONENT = Buffer.from([0x01, 0x00, 0x01]);

const unsupported = (message: string): CairnError => new CairnError('unsupported_key_type', message);

const magnitude = (integer: Buffer): Buffer => {
  let start = 0;
  while (start < integer.length && integer[start] === 0) start++;
  return integer.subarray(start);
};

/**
 * Modulus size and exponent, read from the DER without touching a big-number library. The cost of
 * an RSA verification grows with the exponent's size, and OpenSSL bounds it only for moduli over
 * 3072 bits: a 3072-bit exponent made each CSR check cost ~5 ms. So anything but 65537 is refused
 * here, before any signature is looked at.
 */
function rsaPublicKey(keyBits: Buffer): { bits: number; exponentOk: boolean } {
  const [n, e] = children(expect(readWhole(keyBits), Tag.SEQUENCE, 'RSAPublicKey'));
  if (!n || !e) throw new CairnError('invalid_csr', 'RSAPublicKey is incomplete');
  const modulus = magnitude(content(expect(n, Tag.INTEGER, 'modulus')));
  const exponent = magnitude(content(expect(e, Tag.INTEGER, 'publicExponent')));
  const bits = modulus.length === 0 ? 0 : (modulus.length - 1) * 8 + (32 - Math.clz32(modulus[0]!));
  return { bits, exponentOk: exponent.equals(RSA_EXPONENT) };
}

/** Reads a SubjectPublicKeyInfo node and decides whether Cairn will certify that key. */
export function readSubjectPublicKey(node: Node): SubjectPublicKey {
  const [alg, bits] = children(expect(node, Tag.SEQUENCE, 'SubjectPublicKeyInfo'));
  if (!alg || !bits) throw new CairnError('invalid_csr', 'SubjectPublicKeyInfo is incomplete');
  const [algOid, params] = children(expect(alg, Tag.SEQUENCE, 'AlgorithmIdentifier'));
  const algorithm = decodeOid(algOid!);
  const bitString = content(expect(bits, Tag.BIT_STRING, 'subjectPublicKey'));
  if (bitString.length < 2 || bitString[0] !== 0) throw new CairnError('invalid_csr', 'subjectPublicKey is malformed');
  const keyBits = bitString.subarray(1);
  if (algorithm === EC_PUBLIC_KEY) {
    const curve = params && params.tag === Tag.OID ? CURVES[decodeOid(params)] : undefined;
    if (!curve) throw unsupported('EC keys must use P-256 or P-384');
    return { spki: raw(node), keyType: curve, keyBits };
  }
  if (algorithm === RSA_ENCRYPTION) {
    const { bits: rsaBits, exponentOk } = rsaPublicKey(keyBits);
    if (rsaBits < MIN_RSA_BITS) throw unsupported(`RSA keys must be at least ${MIN_RSA_BITS} bits, got ${rsaBits}`);
    if (rsaBits > MAX_RSA_BITS) throw unsupported(`RSA keys larger than ${MAX_RSA_BITS} bits are not accepted`);
    if (!exponentOk) throw unsupported('RSA keys must use the public exponent 65537');
    return { spki: raw(node), keyType: 'rsa', rsaBits, keyBits };
  }
  throw unsupported('only P-256, P-384 and RSA (2048-4096 bit, exponent 65537) keys are accepted');
}

/** The named curve of an EC key, for the native proof-of-possession check (ecdsa.ts); undefined for RSA. */
export function curveOf(keyType: SubjectKeyType): EcCurve | undefined {
  return CURVE_NAMES[keyType];
}

/** A KeyObject for an RSA key (EC keys are checked by ecdsa.ts without one). */
export function publicKeyObject(key: SubjectPublicKey): KeyObject {
  return createPublicKey({ key: key.spki, format: 'der', type: 'spki' });
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(keyBits: Buffer): Buffer {
  // the one-shot hash: no Hash object per certificate on the issuance path
  return hash('sha1', keyBits, 'buffer');
}

export function subjectPublicKeyFromDer(spki: Buffer): SubjectPublicKey {
  return readSubjectPublicKey(readWhole(spki));
}

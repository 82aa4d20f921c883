import { generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { nullValue, oid, seq } from '../../lib/der.js';

export const KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export interface KeyTypeProfile {
  readonly hash: 'sha256' | 'sha384';
  readonly jwsAlg: 'ES256' | 'ES384' | 'RS256';
  /** DER AlgorithmIdentifier for certificates this key signs. */
  readonly x509SignatureAlgorithm: Buffer;
  /** WebCrypto import parameters (for @peculiar/x509 on the slow path). */
  readonly webCryptoImport: EcKeyImportParams | RsaHashedImportParams;
  readonly webCryptoSign: EcdsaParams | Algorithm;
  /**
   * The longest a CA certificate with this key type may live. NIST SP 800-57 Pt 1 gives CA signing
   * keys a 1–3 year cryptoperiod and retires 112-bit strength (RSA-2048) after 2030; the stronger
   * the key, the longer the cap: RSA-2048 1 year, P-256 3 years, P-384 5 years.
   */
  readonly maxCaTtlSeconds: number;
}

const YEAR = 365 * 86400;

const PROFILES: Readonly<Record<KeyType, KeyTypeProfile>> = {
  'ec-p256': {
    hash: 'sha256',
    jwsAlg: 'ES256',
    x509SignatureAlgorithm: seq(oid('1.2.840.10045.4.3.2')),
    webCryptoImport: { name: 'ECDSA', namedCurve: 'P-256' },
    webCryptoSign: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
    maxCaTtlSeconds: 3 * YEAR,
  },
  'ec-p384': {
    hash: 'sha384',
    jwsAlg: 'ES384',
    x509SignatureAlgorithm: seq(oid('1.2.840.10045.4.3.3')),
    webCryptoImport: { name: 'ECDSA', namedCurve: 'P-384' },
    webCryptoSign: { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams,
    maxCaTtlSeconds: 5 * YEAR,
  },
  'rsa-2048': {
    hash: 'sha256',
    jwsAlg: 'RS256',
    x509SignatureAlgorithm: seq(oid('1.2.840.113549.1.1.11'), nullValue()),
    webCryptoImport: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    webCryptoSign: { name: 'RSASSA-PKCS1-v1_5' },
    maxCaTtlSeconds: YEAR,
  },
};

export function profileOf(keyType: KeyType): KeyTypeProfile {
  return PROFILES[keyType];
}

export function isKeyType(value: string): value is KeyType {
  return (KEY_TYPES as readonly string[]).includes(value);
}

const generate = promisify(generateKeyPair);

export async function generateKeyPairOf(keyType: KeyType): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  switch (keyType) {
    case 'ec-p256':
      return generate('ec', { namedCurve: 'P-256' });
    case 'ec-p384':
      return generate('ec', { namedCurve: 'P-384' });
    case 'rsa-2048':
      return generate('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
  }
}

interface EcKeyImportParams extends Algorithm {
  namedCurve: string;
}
interface RsaHashedImportParams extends Algorithm {
  hash: string;
}
interface EcdsaParams extends Algorithm {
  hash: string;
}
interface Algorithm {
  name: string;
}

import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { bitString, explicit, oid, seq, smallInteger } from './der.js';

/**
 * Minimal PKCS#10 CSRs for keys we generate ourselves (CLI mint, agents, devices): an empty
 * subject and no attributes, since the CA takes only the key from a CSR.
 */
export function createCsr(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const info = seq(smallInteger(0), seq(), spki, explicit(0, Buffer.alloc(0)));
  const type = privateKey.asymmetricKeyType;
  const curve = privateKey.asymmetricKeyDetails?.namedCurve;
  let hash: string;
  let algorithm: Buffer;
  if (type === 'ec' && curve === 'prime256v1') {
    hash = 'sha256';
    algorithm = seq(oid('1.2.840.10045.4.3.2'));
  } else if (type === 'ec' && curve === 'secp384r1') {
    hash = 'sha384';
    algorithm = seq(oid('1.2.840.10045.4.3.3'));
  } else if (type === 'rsa') {
    hash = 'sha256';
    algorithm = seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00]));
  } else {
    throw new TypeError('createCsr supports P-256, P-384 and RSA keys');
  }
  return seq(info, algorithm, bitString(sign(hash, info, privateKey)));
}

export interface GeneratedKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly csr: Buffer;
}

export function generateKeyAndCsr(type: 'ec-p256' | 'ec-p384' | 'rsa-2048' = 'ec-p256'): GeneratedKey {
  const pair =
    type === 'rsa-2048'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: type === 'ec-p384' ? 'P-384' : 'P-256' });
  return { ...pair, csr: createCsr(pair.privateKey, pair.publicKey) };
}

import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
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

export type GeneratedKeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048';

/**
 * A new key pair whose KeyObjects do not share native state with the generation job. Node 20 can
 * deadlock when it garbage-collects a finished key-generation job while a KeyObject from that job
 * is being inspected (the job's destructor takes the key's mutex, which the inspection holds; seen
 * in CI as a hung test: `GetEcKeyDetail` → GC → `~KeyGenJob` → `uv_mutex_lock`). Taking the pair as
 * DER and re-importing it gives keys with their own native state.
 */
export function generateKeyPair(type: GeneratedKeyType = 'ec-p256'): { privateKey: KeyObject; publicKey: KeyObject } {
  const der =
    type === 'rsa-2048'
      ? generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'der' } })
      : generateKeyPairSync('ec', { namedCurve: type === 'ec-p384' ? 'P-384' : 'P-256', publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'der' } });
  return {
    privateKey: createPrivateKey({ key: der.privateKey, format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: der.publicKey, format: 'der', type: 'spki' }),
  };
}

export function generateKeyAndCsr(type: GeneratedKeyType = 'ec-p256'): GeneratedKey {
  const pair = generateKeyPair(type);
  return { ...pair, csr: createCsr(pair.privateKey, pair.publicKey) };
}

import { createCipheriv, createDecipheriv } from 'node:crypto';
import { CairnError } from '../../lib/errors.js';
import type { Random } from '../../lib/random.js';

/**
 * Private keys at rest: AES-256-GCM under a key-encryption key (KEK) that never enters the
 * database. The key's id is bound in as associated data, so a sealed key copied onto another row
 * does not open.
 */
const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export interface Sealer {
  seal(plaintext: Buffer, keyId: string): Buffer;
  open(sealed: Buffer, keyId: string): Buffer;
}

export function createSealer(kek: Buffer, random: Random): Sealer {
  if (kek.length !== 32) throw new TypeError('the key-encryption key must be 32 bytes');
  return {
    seal(plaintext, keyId) {
      const nonce = random.bytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', kek, nonce);
      cipher.setAAD(Buffer.from(keyId, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return Buffer.concat([Buffer.from([VERSION]), nonce, body, cipher.getAuthTag()]);
    },
    open(sealed, keyId) {
      if (sealed.length < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] !== VERSION) {
        throw new CairnError('internal', 'a stored private key has an unknown format');
      }
      const nonce = sealed.subarray(1, 1 + NONCE_BYTES);
      const tag = sealed.subarray(sealed.length - TAG_BYTES);
      const body = sealed.subarray(1 + NONCE_BYTES, sealed.length - TAG_BYTES);
      try {
        const decipher = createDecipheriv('aes-256-gcm', kek, nonce);
        decipher.setAAD(Buffer.from(keyId, 'utf8'));
        decipher.setAuthTag(tag);
        return Buffer.concat([decipher.update(body), decipher.final()]);
      } catch (err) {
        throw new CairnError('internal', 'a stored private key does not open with the configured key-encryption key', { cause: err });
      }
    },
  };
}

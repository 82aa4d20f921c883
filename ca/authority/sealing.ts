import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { CairnError } from '../../lib/errors.js';
import type { Random } from '../../lib/random.js';

/**
 * Private keys at rest: AES-256-GCM under a key-encryption key (KEK) that never enters the
 * database. The key's id is bound in as associated data, so a sealed key copied onto another row
 * does not open.
 *
 * Format 2 names the KEK that sealed it (an 8-byte id, see kekId), so after `cairn kek rotate` a
 * replica knows which values are still under the old KEK and one that was not given the new KEK
 * yet says so, instead of failing authentication. Format 1 (no id) is still read.
 */
const V1 = 1;
const V2 = 2;
const ID_BYTES = 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * A KEK's public name: HMAC-SHA-256 keyed by the KEK over a fixed label, first 8 bytes in hex. It
 * tells keys apart and reveals nothing usable about a 32-byte random key.
 */
export function kekId(kek: Buffer): string {
  return createHmac('sha256', kek).update('cairn key-encryption key id').digest().subarray(0, ID_BYTES).toString('hex');
}

/**
 * The KEKs this process holds: the current one seals; every one held opens. After a rotation the
 * previous KEK stays in memory (never on disk) so values another replica sealed a moment earlier
 * still open and can be re-sealed.
 */
export class KekRing {
  private readonly keys = new Map<string, Buffer>();
  private currentId: string;

  constructor(kek: Buffer) {
    this.currentId = this.add(kek);
  }

  /** Makes `kek` the one that seals; the others stay for opening. Returns its id. */
  use(kek: Buffer): string {
    this.currentId = this.add(kek);
    return this.currentId;
  }

  get current(): { readonly id: string; readonly key: Buffer } {
    return { id: this.currentId, key: this.keys.get(this.currentId)! };
  }

  get ids(): string[] {
    return [...this.keys.keys()];
  }

  get(id: string): Buffer | undefined {
    return this.keys.get(id);
  }

  private add(kek: Buffer): string {
    if (kek.length !== 32) throw new TypeError('the key-encryption key must be 32 bytes');
    const id = kekId(kek);
    this.keys.set(id, Buffer.from(kek));
    return id;
  }
}

export interface Sealer {
  seal(plaintext: Buffer, keyId: string): Buffer;
  open(sealed: Buffer, keyId: string): Buffer;
  /** The id of the KEK that sealed this value; undefined for format 1, which does not say. */
  sealedUnder(sealed: Buffer): string | undefined;
  /** The id of the KEK new values are sealed under. */
  readonly currentKekId: string;
}

function decrypt(kek: Buffer, nonce: Buffer, body: Buffer, tag: Buffer, keyId: string): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', kek, nonce);
  decipher.setAAD(Buffer.from(keyId, 'utf8'));
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(body), decipher.final()]);
}

function sealedUnder(sealed: Buffer): string | undefined {
  return sealed[0] === V2 && sealed.length >= 1 + ID_BYTES ? sealed.subarray(1, 1 + ID_BYTES).toString('hex') : undefined;
}

export function createSealer(keys: Buffer | KekRing, random: Random): Sealer {
  const ring = keys instanceof KekRing ? keys : new KekRing(keys);
  return {
    sealedUnder,
    get currentKekId() {
      return ring.current.id;
    },
    seal(plaintext, keyId) {
      const { id, key } = ring.current;
      const nonce = random.bytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      cipher.setAAD(Buffer.from(keyId, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return Buffer.concat([Buffer.from([V2]), Buffer.from(id, 'hex'), nonce, body, cipher.getAuthTag()]);
    },
    open(sealed, keyId) {
      const head = sealed[0] === V2 ? 1 + ID_BYTES : 1;
      if ((sealed[0] !== V1 && sealed[0] !== V2) || sealed.length < head + NONCE_BYTES + TAG_BYTES) {
        throw new CairnError('internal', 'a stored private key has an unknown format');
      }
      const nonce = sealed.subarray(head, head + NONCE_BYTES);
      const tag = sealed.subarray(sealed.length - TAG_BYTES);
      const body = sealed.subarray(head + NONCE_BYTES, sealed.length - TAG_BYTES);
      const id = sealedUnder(sealed);
      const candidates = id === undefined ? ring.ids.map((i) => ring.get(i)!) : [ring.get(id)].filter((k): k is Buffer => k !== undefined);
      if (candidates.length === 0) {
        throw new CairnError(
          'kek_unavailable',
          `a stored private key is sealed under key-encryption key ${id}, which this process does not hold (it holds ${ring.ids.join(', ')}): the KEK was rotated; put the new KEK in this replica's --kek-file and send it SIGHUP, or restart it`,
        );
      }
      let last: unknown;
      for (const kek of candidates) {
        try {
          return decrypt(kek, nonce, body, tag, keyId);
        } catch (err) {
          last = err;
        }
      }
      throw new CairnError('internal', 'a stored private key does not open with the configured key-encryption key', { cause: last });
    },
  };
}

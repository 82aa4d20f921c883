import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { CairnError } from '../../lib/errors.js';
import type { Random } from '../../lib/random.js';

/**
 * Private keys at rest: AES-256-GCM under a key-encryption key (KEK) that never enters the
 * database. The key's id is bound in as associated data, so a sealed key copied onto another row
 * does not open.
 *
 * The format (1) does not name the KEK: a value is tried with the current KEK first, then with any
 * other this process holds (after `cairn kek rotate`, the previous one stays in memory). It stays
 * format 1 so that the release before this one, which may share the database during a rolling
 * upgrade, opens everything this one seals.
 */
const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * A KEK's public name: HMAC-SHA-256 keyed by the KEK over a fixed label, first 8 bytes in hex. It
 * tells keys apart in messages and `cairn kek status`, and reveals nothing usable about a 32-byte key.
 */
export function kekId(kek: Buffer): string {
  return createHmac('sha256', kek).update('cairn key-encryption key id').digest().subarray(0, 8).toString('hex');
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

  /** Holds `kek` for opening only (a rotation's new KEK until it commits). Returns its id. */
  hold(kek: Buffer): string {
    return this.add(kek);
  }

  get current(): { readonly id: string; readonly key: Buffer } {
    return { id: this.currentId, key: this.keys.get(this.currentId)! };
  }

  /** The ids held, the current one first: the order values are tried in. */
  get ids(): string[] {
    return [this.currentId, ...[...this.keys.keys()].filter((id) => id !== this.currentId)];
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
  /** The id of the held KEK that opens this value, or undefined when none does. */
  openedBy(sealed: Buffer, keyId: string): string | undefined;
}

interface Parts {
  readonly nonce: Buffer;
  readonly body: Buffer;
  readonly tag: Buffer;
}

function partsOf(sealed: Buffer): Parts {
  if (sealed.length < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] !== VERSION) {
    throw new CairnError('internal', 'a stored private key has an unknown format');
  }
  return { nonce: sealed.subarray(1, 1 + NONCE_BYTES), body: sealed.subarray(1 + NONCE_BYTES, sealed.length - TAG_BYTES), tag: sealed.subarray(sealed.length - TAG_BYTES) };
}

function decrypt(kek: Buffer, p: Parts, keyId: string): Buffer | undefined {
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, p.nonce);
    decipher.setAAD(Buffer.from(keyId, 'utf8'));
    decipher.setAuthTag(p.tag);
    return Buffer.concat([decipher.update(p.body), decipher.final()]);
  } catch {
    return undefined;
  }
}

export function createSealer(keys: Buffer | KekRing, random: Random): Sealer {
  const ring = keys instanceof KekRing ? keys : new KekRing(keys);
  const find = (sealed: Buffer, keyId: string): { id: string; plain: Buffer } | undefined => {
    const parts = partsOf(sealed);
    for (const id of ring.ids) {
      const plain = decrypt(ring.get(id)!, parts, keyId);
      if (plain) return { id, plain };
    }
    return undefined;
  };
  return {
    seal(plaintext, keyId) {
      const nonce = random.bytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', ring.current.key, nonce);
      cipher.setAAD(Buffer.from(keyId, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return Buffer.concat([Buffer.from([VERSION]), nonce, body, cipher.getAuthTag()]);
    },
    openedBy: (sealed, keyId) => find(sealed, keyId)?.id,
    open(sealed, keyId) {
      const found = find(sealed, keyId);
      if (found) return found.plain;
      // Authentication failed under every KEK held: most likely the value was re-sealed under a KEK
      // this process was not given yet (a rotation on another replica), else it is damaged.
      throw new CairnError(
        'kek_unavailable',
        `a stored private key does not open with the key-encryption key${ring.ids.length > 1 ? 's' : ''} this process holds (${ring.ids.join(', ')}): if the KEK was rotated (cairn kek rotate), put the new one in this replica's --kek-file and send it SIGHUP, or restart it`,
      );
    },
  };
}

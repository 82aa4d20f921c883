import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/**
 * C2SP signed-note with Ed25519 signatures, and the C2SP tlog-checkpoint body. Pure functions
 * (keys passed in), shared by the CA and `cairn audit verify`.
 */

const ED25519 = 0x01;
const DASH = '\u2014 ';
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function checkKeyName(name: string): void {
  if (name.length === 0 || /[\s+]/u.test(name)) throw new TypeError(`a note key name must be non-empty, without spaces or '+': ${JSON.stringify(name)}`);
}

/** First 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key). */
export function noteKeyId(name: string, publicKey: Buffer): Buffer {
  return createHash('sha256').update(name, 'utf8').update(Buffer.from([0x0a, ED25519])).update(publicKey).digest().subarray(0, 4);
}

/** `<name>+<key id hex>+<base64(0x01 ‖ key)>`. */
export function verifierKey(name: string, publicKey: Buffer): string {
  checkKeyName(name);
  return `${name}+${noteKeyId(name, publicKey).toString('hex')}+${Buffer.concat([Buffer.from([ED25519]), publicKey]).toString('base64')}`;
}

export function parseVerifierKey(vkey: string): { name: string; keyId: Buffer; publicKey: Buffer } {
  // the base64 key may itself hold '+': split at the first two only
  const m = /^([^+]+)\+([^+]+)\+(.+)$/s.exec(vkey.trim());
  if (!m) throw new TypeError('a verifier key is <name>+<hex key id>+<base64 key>');
  const [, name, hex, b64] = m as unknown as [string, string, string, string];
  checkKeyName(name);
  const raw = Buffer.from(b64, 'base64');
  if (!/^[0-9a-f]{8}$/.test(hex) || raw.length !== 33 || raw[0] !== ED25519) throw new TypeError('the verifier key is not an Ed25519 note key');
  const publicKey = raw.subarray(1);
  if (!noteKeyId(name, publicKey).equals(Buffer.from(hex, 'hex'))) throw new TypeError('the verifier key\'s id does not match its name and key');
  return { name, keyId: Buffer.from(hex, 'hex'), publicKey };
}

/** The raw 32-byte Ed25519 public key of a public or private key object. */
export const rawEd25519 = (key: KeyObject): Buffer => (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' }).subarray(SPKI_ED25519_PREFIX.length);
export const ed25519PublicKey = (raw: Buffer): KeyObject => createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });

/** Signs `text` (lines each ending in `\n`) as a note: text, an empty line, one signature line. */
export function signNote(text: string, name: string, privateKey: KeyObject): string {
  checkKeyName(name);
  if (!text.endsWith('\n') || text.includes('\n\n')) throw new TypeError('note text must be non-empty lines each ending in a newline');
  const pub = rawEd25519(createPublicKey(privateKey));
  const sig = sign(null, Buffer.from(text, 'utf8'), privateKey);
  return `${text}\n${DASH}${name} ${Buffer.concat([noteKeyId(name, pub), sig]).toString('base64')}\n`;
}

/**
 * The note's text when a signature line verifies under `vkey`; throws otherwise. Signature lines
 * by other keys (witnesses' cosignatures) are ignored.
 */
export function openNote(note: string, vkey: string): string {
  const key = parseVerifierKey(vkey);
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new Error('malformed note: no blank line before the signatures');
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split('\n');
  const pub = ed25519PublicKey(key.publicKey);
  for (const line of lines) {
    if (!line.startsWith(DASH)) throw new Error('malformed note: a signature line does not start with an em dash');
    const [name, b64] = line.slice(DASH.length).split(' ');
    if (name !== key.name || b64 === undefined) continue;
    const blob = Buffer.from(b64, 'base64');
    if (blob.length !== 68 || !blob.subarray(0, 4).equals(key.keyId)) continue;
    if (verify(null, Buffer.from(text, 'utf8'), pub, blob.subarray(4))) return text;
    throw new Error(`the note's signature by ${key.name} does not verify`);
  }
  throw new Error(`the note carries no signature by ${key.name}+${key.keyId.toString('hex')}`);
}

export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly root: Buffer;
}

export const checkpointText = (c: Checkpoint): string => `${c.origin}\n${c.size}\n${c.root.toString('base64')}\n`;

export function parseCheckpoint(text: string): Checkpoint {
  const lines = text.split('\n');
  const [origin, size, root] = lines;
  if (!origin || size === undefined || root === undefined || !/^(0|[1-9][0-9]{0,15})$/.test(size)) throw new Error('malformed checkpoint: origin, tree size and root hash lines expected');
  const hash = Buffer.from(root, 'base64');
  if (hash.length !== 32 || hash.toString('base64') !== root) throw new Error('malformed checkpoint: the root hash is not base64 of 32 bytes');
  return { origin, size: Number(size), root: hash };
}

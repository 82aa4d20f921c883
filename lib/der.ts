/**
 * A minimal DER reader and writer: just enough ASN.1 to parse CSRs and to write certificate
 * templates on the issuance fast path, where a general-purpose schema library costs 100x more.
 */

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

export class DerError extends Error {
  override readonly name = 'DerError';
}

// ---------------------------------------------------------------- writer

/** One allocation per node (tag, length and content written in place): this runs per certificate on the issuance path. */
export function tlv(tag: number, content: Buffer | readonly Buffer[]): Buffer {
  const parts: readonly Buffer[] = Buffer.isBuffer(content) ? [content] : content;
  let length = 0;
  for (const p of parts) length += p.length;
  let lengthOfLength = 0;
  for (let n = length; n >= 1; n = Math.floor(n / 256)) lengthOfLength++;
  const header = length < 0x80 ? 2 : 2 + lengthOfLength;
  const out = Buffer.allocUnsafe(header + length);
  out[0] = tag;
  if (length < 0x80) {
    out[1] = length;
  } else {
    out[1] = 0x80 | lengthOfLength;
    for (let i = 0, n = length; i < lengthOfLength; i++, n = Math.floor(n / 256)) out[header - 1 - i] = n & 0xff;
  }
  let at = header;
  for (const p of parts) {
    p.copy(out, at);
    at += p.length;
  }
  return out;
}

export const seq = (...items: Buffer[]): Buffer => tlv(Tag.SEQUENCE, items);
export const set = (...items: Buffer[]): Buffer => tlv(Tag.SET, items);
export const octetString = (bytes: Buffer): Buffer => tlv(Tag.OCTET_STRING, bytes);
export const bitString = (bytes: Buffer, unusedBits = 0): Buffer => tlv(Tag.BIT_STRING, [Buffer.from([unusedBits]), bytes]);
export const bool = (value: boolean): Buffer => tlv(Tag.BOOLEAN, Buffer.from([value ? 0xff : 0x00]));
export const nullValue = (): Buffer => Buffer.from([Tag.NULL, 0]);
export const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 | n, content);
export const implicitPrimitive = (n: number, bytes: Buffer): Buffer => tlv(0x80 | n, bytes);

/** INTEGER from unsigned big-endian magnitude bytes (adds the 0x00 pad a set top bit needs). */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return tlv(Tag.INTEGER, trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export function smallInteger(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) throw new TypeError('smallInteger out of range');
  const bytes: number[] = [];
  let n = value;
  do {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  } while (n > 0);
  return unsignedInteger(Buffer.from(bytes));
}

export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  if (parts.length < 2 || parts.some((p) => !Number.isInteger(p) || p < 0)) throw new TypeError(`bad OID ${dotted}`);
  const out = [40 * parts[0]! + parts[1]!];
  for (const part of parts.slice(2)) {
    const chunk: number[] = [];
    let n = part;
    do {
      chunk.unshift(n & 0x7f);
      n = Math.floor(n / 128);
    } while (n > 0);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i]! |= 0x80;
    out.push(...chunk);
  }
  return tlv(Tag.OID, Buffer.from(out));
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, always UTC, whole seconds. */
export function time(date: Date): Buffer {
  const y = date.getUTCFullYear();
  const rest =
    pad2(date.getUTCMonth() + 1) +
    pad2(date.getUTCDate()) +
    pad2(date.getUTCHours()) +
    pad2(date.getUTCMinutes()) +
    pad2(date.getUTCSeconds()) +
    'Z';
  if (y >= 1950 && y < 2050) return tlv(Tag.UTC_TIME, Buffer.from(pad2(y % 100) + rest, 'latin1'));
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, '0') + rest, 'latin1'));
}

// ---------------------------------------------------------------- reader

export interface Node {
  readonly tag: number;
  /** Offset of the first content byte in `buf`. */
  readonly start: number;
  /** Offset one past the last content byte. */
  readonly end: number;
  /** Offset of the tag byte. */
  readonly offset: number;
  readonly buf: Buffer;
}

export function read(buf: Buffer, offset = 0, limit = buf.length): Node {
  if (offset + 2 > limit) throw new DerError('truncated DER header');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let len = buf[offset + 1]!;
  let start = offset + 2;
  if (len & 0x80) {
    const count = len & 0x7f;
    if (count === 0 || count > 4) throw new DerError('unsupported DER length');
    if (start + count > limit) throw new DerError('truncated DER length');
    len = 0;
    for (let i = 0; i < count; i++) len = len * 256 + buf[start + i]!;
    if (len < 0x80 || buf[start] === 0) throw new DerError('non-minimal DER length');
    start += count;
  }
  const end = start + len;
  if (end > limit) throw new DerError('DER value runs past its container');
  return { tag, start, end, offset, buf };
}

export function expect(node: Node, tag: number, what: string): Node {
  if (node.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got 0x${node.tag.toString(16)}`);
  return node;
}

export function children(node: Node): Node[] {
  const out: Node[] = [];
  for (let at = node.start; at < node.end; ) {
    const child = read(node.buf, at, node.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** Parses a whole buffer that must hold exactly one TLV. */
export function readWhole(buf: Buffer): Node {
  const node = read(buf, 0);
  if (node.end !== buf.length) throw new DerError('trailing bytes after DER value');
  return node;
}

export const raw = (node: Node): Buffer => node.buf.subarray(node.offset, node.end);
export const content = (node: Node): Buffer => node.buf.subarray(node.start, node.end);

export function decodeOid(node: Node): string {
  expect(node, Tag.OID, 'OID');
  const bytes = content(node);
  if (bytes.length === 0) throw new DerError('empty OID');
  const first = bytes[0]!;
  const parts = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  let acc = 0;
  for (let i = 1; i < bytes.length; i++) {
    const b = bytes[i]!;
    acc = acc * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      parts.push(acc);
      acc = 0;
    } else if (i === bytes.length - 1) {
      throw new DerError('truncated OID');
    }
  }
  return parts.join('.');
}

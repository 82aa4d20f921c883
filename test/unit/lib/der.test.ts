import { describe, expect, it } from 'vitest';
import { children, content, readWhole, seq, tlv, Tag } from '../../../lib/der.js';

/** The DER length octets of `n`, written out by hand (X.690 §8.1.3): short form below 128, else 0x80|count then big-endian. */
function lengthOctets(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

describe('DER writer', () => {
  it('writes the tag, the minimal length (short and long forms) and the content, and reads back', () => {
    for (const n of [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x1234, 0xffff, 0x10000, 0x12345]) {
      const body = Buffer.alloc(n, 0x5a);
      const der = tlv(Tag.OCTET_STRING, body);
      const header = [Tag.OCTET_STRING, ...lengthOctets(n)];
      expect([...der.subarray(0, header.length)], `length ${n}`).toEqual(header);
      expect(der.length).toBe(header.length + n);
      expect(content(readWhole(der)).equals(body)).toBe(true);
    }
  });

  it('concatenates parts in order, and nests', () => {
    const a = tlv(Tag.INTEGER, Buffer.from([1]));
    const b = tlv(Tag.UTF8_STRING, Buffer.from('x'.repeat(200)));
    const s = seq(a, b, seq());
    expect([...s.subarray(0, 4)]).toEqual([Tag.SEQUENCE, 0x81, a.length + b.length + 2, Tag.INTEGER]);
    const parts = children(readWhole(s));
    expect(parts.map((p) => p.tag)).toEqual([Tag.INTEGER, Tag.UTF8_STRING, Tag.SEQUENCE]);
    expect(content(parts[1]!).toString()).toBe('x'.repeat(200));
    expect(content(parts[2]!)).toHaveLength(0);
  });
});

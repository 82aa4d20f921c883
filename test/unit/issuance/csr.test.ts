import { execFileSync } from 'node:child_process';
import { createECDH, createPublicKey, generateKeyPairSync, hash, sign, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeCsrText, verifyCsr } from '../../../ca/issuance/csr.js';
import { verifyEcdsa } from '../../../ca/issuance/ecdsa.js';
import { bitString, explicit, oid, seq, smallInteger, unsignedInteger } from '../../../lib/der.js';
import { CairnError } from '../../../lib/errors.js';
import { createCsr } from '../../../lib/pkcs10.js';

function opensslCsr(keyArgs: string[], extra: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-csr-'));
  try {
    execFileSync('openssl', ['req', '-new', '-newkey', ...keyArgs, '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'r.pem'), '-subj', '/CN=evil', ...extra], { stdio: 'ignore' });
    return readFileSync(join(dir, 'r.pem'), 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof CairnError ? err.code : `not-cairn: ${(err as Error).message}`;
  }
  return undefined;
}

describe('CSR verification', () => {
  it.each([
    [['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'ec-p256'],
    [['ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], 'ec-p384'],
    [['rsa:2048'], 'rsa'],
    [['rsa:4096'], 'rsa'],
  ])('accepts an openssl CSR with key %j', (keyArgs, keyType) => {
    const csr = verifyCsr(decodeCsrText(opensslCsr(keyArgs)));
    expect(csr.publicKey.keyType).toBe(keyType);
  });

  it('accepts our own CSRs in base64 DER', () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = createCsr(pair.privateKey, pair.publicKey);
    expect(verifyCsr(decodeCsrText(der.toString('base64'))).publicKey.spki.equals(pair.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
  });

  it('ignores requested SANs (identity never comes from the CSR)', () => {
    const pem = opensslCsr(['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-addext', 'subjectAltName=URI:spiffe://evil.org/admin,DNS:evil.org']);
    expect(verifyCsr(decodeCsrText(pem)).publicKey.keyType).toBe('ec-p256');
  });

  it('refuses a CSR that asks for a CA certificate', () => {
    const pem = opensslCsr(['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-addext', 'basicConstraints=critical,CA:TRUE']);
    expect(codeOf(() => verifyCsr(decodeCsrText(pem)))).toBe('invalid_csr');
  });

  it('refuses a bad signature', () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = Buffer.from(createCsr(pair.privateKey, pair.publicKey));
    der[der.length - 5]! ^= 0x01;
    expect(codeOf(() => verifyCsr(der))).toMatch(/csr_signature_invalid|invalid_csr/);
    // a CSR signed by another key than the one it carries
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(codeOf(() => verifyCsr(createCsr(other.privateKey, pair.publicKey)))).toBe('csr_signature_invalid');
  });

  it.each([
    [['rsa:1024'], 'unsupported_key_type'],
    [['ed25519'], 'unsupported_key_type'],
    [['ed448'], 'unsupported_key_type'],
    [['ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'], 'unsupported_key_type'],
  ])('refuses key %j with %s', (keyArgs, code) => {
    expect(codeOf(() => verifyCsr(decodeCsrText(opensslCsr(keyArgs))))).toBe(code);
  });

  it('refuses truncated, garbage and oversized input with invalid_csr', () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = createCsr(pair.privateKey, pair.publicKey);
    for (let cut = 1; cut < der.length; cut += 7) expect(codeOf(() => verifyCsr(der.subarray(0, cut)))).toBe('invalid_csr');
    expect(codeOf(() => verifyCsr(Buffer.concat([der, Buffer.from([0])])))).toBe('invalid_csr');
    expect(codeOf(() => decodeCsrText('not a csr!'))).toBe('invalid_csr');
    expect(codeOf(() => decodeCsrText('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'))).toBe('invalid_csr');
    expect(codeOf(() => verifyCsr(Buffer.alloc(20000, 0x30)))).toBe('invalid_csr');
    expect(codeOf(() => verifyCsr(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])))).toBe('invalid_csr');
  });
});

// The proof-of-possession check for EC keys runs in ca/issuance/native/ecdsa.c, which validates the
// point itself (on the curve, not infinity) instead of letting OpenSSL's key import do it.

const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const EC_PUBLIC_KEY = oid('1.2.840.10045.2.1');
const P256 = oid('1.2.840.10045.3.1.7');
const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

const spkiWithPoint = (point: Buffer, curve = P256): Buffer => seq(seq(EC_PUBLIC_KEY, curve), bitString(point));
const infoFor = (spki: Buffer): Buffer => seq(smallInteger(0), seq(), spki, explicit(0, Buffer.alloc(0)));
const csrOf = (info: Buffer, signature: Buffer, algorithm = ECDSA_SHA256): Buffer => seq(info, algorithm, bitString(signature));
const pointOf = (key: KeyObject): Buffer => {
  const jwk = key.export({ format: 'jwk' });
  return Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
};
const toBytes = (n: bigint, len: number): Buffer => Buffer.from(n.toString(16).padStart(len * 2, '0'), 'hex');
const toBig = (b: Buffer): bigint => BigInt(`0x${b.toString('hex')}`);
const ecdsaSig = (r: bigint, s: bigint): Buffer => seq(unsignedInteger(toBytes(r, 32)), unsignedInteger(toBytes(s, 32)));

describe('CSR proof of possession on EC keys (native check)', () => {
  it('refuses the point at infinity, for which anyone can forge the signature', () => {
    const info = infoFor(spkiWithPoint(Buffer.from([0x00])));
    // With Q = O, verification computes R = (e/s)·G + (r/s)·O = (e/s)·G: take s = 1 and r = x(e·G).
    const e = toBig(hash('sha256', info, 'buffer')) % P256_ORDER;
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(toBytes(e, 32));
    const r = toBig(ecdh.getPublicKey().subarray(1, 33)) % P256_ORDER;
    const forged = csrOf(info, ecdsaSig(r, 1n));
    expect(codeOf(() => verifyCsr(forged))).toBe('csr_signature_invalid');
    // the same forgery against the encoded infinity point, straight to the native check
    expect(verifyEcdsa('P-256', Buffer.from([0x00]), 'sha256', info, ecdsaSig(r, 1n))).toBe(false);
  });

  it('refuses a point off the curve even with a signature that verifies for the real key', () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const point = pointOf(pair.publicKey);
    point[point.length - 1]! ^= 0x01;
    const info = infoFor(spkiWithPoint(point));
    expect(codeOf(() => verifyCsr(csrOf(info, sign('sha256', info, pair.privateKey))))).toBe('csr_signature_invalid');
  });

  it('accepts a compressed point, refuses the hybrid form', () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const full = pointOf(pair.publicKey);
    const compressed = Buffer.concat([Buffer.from([0x02 | (full[64]! & 1)]), full.subarray(1, 33)]);
    const info = infoFor(spkiWithPoint(compressed));
    expect(verifyCsr(csrOf(info, sign('sha256', info, pair.privateKey))).publicKey.keyType).toBe('ec-p256');
    const hybrid = Buffer.from(full);
    hybrid[0] = 0x06 | (full[64]! & 1);
    const hybridInfo = infoFor(spkiWithPoint(hybrid));
    expect(codeOf(() => verifyCsr(csrOf(hybridInfo, sign('sha256', hybridInfo, pair.privateKey))))).toBe('csr_signature_invalid');
  });

  it('agrees with node:crypto on valid, tampered, re-keyed and non-DER signatures', () => {
    const cases: { curve: 'P-256' | 'P-384'; hash: 'sha256' | 'sha384' | 'sha512' }[] = [
      { curve: 'P-256', hash: 'sha256' }, { curve: 'P-256', hash: 'sha384' }, { curve: 'P-256', hash: 'sha512' },
      { curve: 'P-384', hash: 'sha384' }, { curve: 'P-384', hash: 'sha256' },
    ];
    let accepted = 0;
    let refused = 0;
    for (const c of cases) {
      for (let i = 0; i < 12; i++) {
        const pair = generateKeyPairSync('ec', { namedCurve: c.curve });
        const other = generateKeyPairSync('ec', { namedCurve: c.curve });
        const data = Buffer.from(`message ${i}`);
        const good = sign(c.hash, data, pair.privateKey);
        const flipped = Buffer.from(good);
        flipped[flipped.length - 1]! ^= 0x01;
        // r with a redundant leading zero byte: the same numbers, but not DER
        const padded = Buffer.concat([Buffer.from([0x30, good[1]! + 1, 0x02, good[3]! + 1, 0x00]), good.subarray(4)]);
        const variants: [Buffer, Buffer, KeyObject][] = [
          [data, good, pair.publicKey], [data, flipped, pair.publicKey], [Buffer.from(`message ${i}!`), good, pair.publicKey],
          [data, good, other.publicKey], [data, padded, pair.publicKey], [data, Buffer.alloc(0), pair.publicKey],
        ];
        for (const [d, s, key] of variants) {
          const expected = verify(c.hash, d, key, s);
          expect(verifyEcdsa(c.curve, pointOf(key), c.hash, d, s), `${c.curve}/${c.hash}`).toBe(expected);
          if (expected) accepted++;
          else refused++;
        }
      }
    }
    expect(accepted).toBe(5 * 12);
    expect(refused).toBe(5 * 12 * 5);
  });

  it("leaves no error on OpenSSL's queue for node:crypto to report as its own", () => {
    const garbage = (): string => {
      try {
        createPublicKey({ key: Buffer.from('not a key'), format: 'der', type: 'spki' });
      } catch (err) {
        return (err as Error).message;
      }
      return 'no error';
    };
    const before = garbage();
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const offCurve = pointOf(pair.publicKey);
    offCurve[10]! ^= 0x01;
    for (let i = 0; i < 3; i++) expect(verifyEcdsa('P-256', offCurve, 'sha256', Buffer.from('x'), Buffer.from([0x30, 0x00]))).toBe(false);
    expect(garbage()).toBe(before);
  });

  it('refuses arguments of the wrong type with a TypeError, not a crash', () => {
    const call = verifyEcdsa as unknown as (...args: unknown[]) => boolean;
    expect(() => call('P-521', Buffer.alloc(1), 'sha256', Buffer.alloc(1), Buffer.alloc(1))).toThrow(TypeError);
    expect(() => call('P-256', 'point', 'sha256', Buffer.alloc(1), Buffer.alloc(1))).toThrow(TypeError);
    expect(() => call('P-256', Buffer.alloc(1), 'md5', Buffer.alloc(1), Buffer.alloc(1))).toThrow(TypeError);
    expect(() => call('P-256', Buffer.alloc(1))).toThrow(TypeError);
  });
});

import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeCsrText, verifyCsr } from '../../../ca/issuance/csr.js';
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

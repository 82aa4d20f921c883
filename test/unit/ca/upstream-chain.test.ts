import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { certificatesFromPem, checkValidAt, pathToRoot, privateKeyFromPem, rootsOf } from '../../../ca/upstream/chain.js';
import { intermediatesOf, x509AnchorsOf } from '../../../ca/upstream/published.js';
import type { AuthorityKey } from '../../../ca/authority/store.js';
import { isCairnError } from '../../../lib/errors.js';
import { CA_EXT, enterprisePki, signWith } from '../../support/enterprise-ca.js';

const dir = mkdtempSync(join(tmpdir(), 'cairn-upstream-unit-'));
const pki = enterprisePki(dir);
const der = (path: string): Buffer => new X509Certificate(readFileSync(path)).raw;
const refusal = (fn: () => unknown): { code: string; message: string } => {
  try {
    fn();
  } catch (err) {
    if (isCairnError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('not refused');
};

describe('upstream chains (checked with an openssl-made PKI)', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const root = der(pki.rootCert);
  const issuing = der(pki.issuingCert);
  const sub = signWith(dir, 'sub-issuing', { cert: pki.issuingCert, key: pki.issuingKey }, { subject: '/CN=Sub Issuing', days: 365, ext: CA_EXT });
  const subDer = der(sub.cert);
  const now = new Date();

  it('orders a shuffled pool into a path up to the self-signed root, ignoring strangers', () => {
    const stranger = der(signWith(dir, 'stranger', { cert: pki.rootCert, key: pki.rootKey }, { subject: '/CN=Stranger', days: 30, ext: CA_EXT }).cert);
    expect(pathToRoot(subDer, [root, stranger, issuing], 'f', now)).toEqual([issuing, root]);
    expect(pathToRoot(root, [], 'f', now)).toEqual([]);
    expect(rootsOf([subDer, issuing, root])).toEqual([root]);
    expect(refusal(() => pathToRoot(subDer, [root], 'chain', now))).toMatchObject({ code: 'invalid_upstream_ca', message: expect.stringMatching(/^chain: no certificate given signs/) });
  });

  it('refuses what is not valid now, a PEM with too many blocks, other PEM blocks, and encrypted keys, without quoting them', () => {
    expect(refusal(() => checkValidAt(root, new Date(Date.now() + 4000 * 86400_000), 'f')).code).toBe('upstream_expires_too_soon');
    expect(refusal(() => checkValidAt(root, new Date(Date.now() - 86400_000), 'f')).code).toBe('invalid_upstream_ca');
    // a certificate made a moment ago by a host whose clock is a little ahead is fine
    expect(() => checkValidAt(root, new Date(Date.now() - 60_000), 'f')).not.toThrow();
    const pem = readFileSync(pki.rootCert, 'utf8');
    expect(refusal(() => certificatesFromPem(pem.repeat(9), 'f')).message).toMatch(/more than 8 PEM blocks/);
    // unterminated blocks are counted, not scanned
    expect(refusal(() => certificatesFromPem('-----BEGIN CERTIFICATE-----\n'.repeat(2000), 'f')).message).toMatch(/more than 8 PEM blocks/);
    expect(certificatesFromPem(pem + pem, 'f')).toHaveLength(2);
    const key = readFileSync(pki.rootKey, 'utf8');
    const inCert = refusal(() => certificatesFromPem(key, 'f'));
    expect(inCert.message).toMatch(/PEM "PRIVATE KEY" block/);
    expect(inCert.message).not.toContain(key.split('\n')[1]!);
    expect(refusal(() => privateKeyFromPem('-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n', 'k')).message).toMatch(/^k: the private key is encrypted/);
    expect(privateKeyFromPem(key, 'k').asymmetricKeyType).toBe('ec');
  });

  it('the bundle carries each root once; SVIDs carry the CA certificate and the intermediates, never the root', () => {
    const key = (id: string, certificate: Buffer, upstreamChain: Buffer | null): AuthorityKey => ({
      id, trustDomain: 't.test', kind: 'x509', keyType: 'ec-p256', status: 'active', publicKey: Buffer.alloc(0), certificate, privateKeySealed: Buffer.alloc(0),
      notBefore: now, notAfter: now, createdAt: now, upstreamChain,
    });
    const selfSigned = key('a', issuing, null);
    const under = key('b', subDer, Buffer.concat([issuing, root]));
    const again = key('c', subDer, Buffer.concat([issuing, root]));
    const awaiting = { ...key('d', subDer, null), certificate: null };
    expect(x509AnchorsOf([selfSigned, under, again, awaiting])).toEqual([issuing, root]);
    expect(intermediatesOf(under)).toEqual([subDer, issuing]);
    expect(intermediatesOf(selfSigned)).toEqual([]);
  });
});

import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import { buildLeafTbs, signCertificate, type LeafFields } from '../../../ca/issuance/leaf-template.js';
import { subjectPublicKeyFromDer } from '../../../ca/issuance/spki.js';
import { derToPem } from '../../../spiffe/bundle/bundle.js';
import { parseX509Svid, verifyX509Svid } from '../../../spiffe/svid/x509.js';
import { referenceLeaf, testCaCertificate } from '../../support/certs.js';
import { opensslText, opensslVerify } from '../../support/openssl.js';

function fieldsOf(der: Buffer) {
  const c = new x509.X509Certificate(der);
  return {
    version: c.toString('text').match(/Version: (\S+)/)?.[1],
    serial: c.serialNumber,
    subject: c.subject,
    issuer: c.issuer,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    spki: Buffer.from(c.publicKey.rawData).toString('hex'),
    signatureAlgorithm: JSON.stringify(c.signatureAlgorithm),
    extensions: c.extensions.map((e) => ({ type: e.type, critical: e.critical, value: Buffer.from(e.value).toString('hex') })),
  };
}

const keyTypes = ['ec-p256', 'ec-p384', 'rsa-2048'] as const;

describe('leaf X509-SVID fast path', () => {
  for (const caType of keyTypes) {
    for (const leafType of keyTypes) {
      it(`CA ${caType}, leaf ${leafType}: equals the @peculiar/x509 reference field by field and passes openssl verify`, async () => {
        const ca = await testCaCertificate('example.org', caType);
        const pair = leafType === 'rsa-2048' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: leafType === 'ec-p384' ? 'P-384' : 'P-256' });
        const publicKey = subjectPublicKeyFromDer(pair.publicKey.export({ format: 'der', type: 'spki' }));
        const leaf: LeafFields = {
          serial: Buffer.from('8f0102030405060708090a0b0c0d0e0f', 'hex'),
          notBefore: new Date(Math.floor(Date.now() / 1000) * 1000 - 10_000),
          notAfter: new Date(Math.floor(Date.now() / 1000) * 1000 + 3_600_000),
          spiffeId: 'spiffe://example.org/ns/prod/sa/web',
          dnsNames: ['web.example.org', '*.web.example.org'],
          publicKey,
        };
        const fast = signCertificate(ca.template, buildLeafTbs(ca.template, leaf));
        const slow = await referenceLeaf(ca, leaf, publicKey);
        expect(fieldsOf(fast)).toEqual(fieldsOf(slow));
        expect(new x509.X509Certificate(fast).verify({ publicKey: new x509.X509Certificate(ca.der).publicKey, signatureOnly: true }));
        expect(opensslVerify(derToPem(fast), derToPem(ca.der), ['-x509_strict'])).toContain('OK');
        const svid = verifyX509Svid([fast], () => ({ trustDomain: 'example.org', x509Authorities: [ca.der], jwtAuthorities: [] }), new Date());
        expect(svid.spiffeId.toString()).toBe('spiffe://example.org/ns/prod/sa/web');
        expect(svid.dnsNames).toEqual(['web.example.org', '*.web.example.org']);
      });
    }
  }

  it('writes the SPIFFE leaf profile openssl reads back', async () => {
    const ca = await testCaCertificate('example.org');
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const publicKey = subjectPublicKeyFromDer(pair.publicKey.export({ format: 'der', type: 'spki' }));
    const der = signCertificate(
      ca.template,
      buildLeafTbs(ca.template, { serial: Buffer.from('00ff', 'hex'), notBefore: new Date('2026-01-01T00:00:00Z'), notAfter: new Date('2051-01-01T00:00:00Z'), spiffeId: 'spiffe://example.org/a', dnsNames: [], publicKey }),
    );
    const text = opensslText(derToPem(der));
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature, Key Encipherment, Key Agreement/);
    expect(text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toMatch(/URI:spiffe:\/\/example.org\/a\s/);
    expect(text).toContain('Not After : Jan  1 00:00:00 2051 GMT'); // GeneralizedTime from 2050 on
    expect(text).toContain('Serial Number: 255 (0xff)');
    expect(parseX509Svid([der]).spiffeId.path).toBe('/a');
  });
});

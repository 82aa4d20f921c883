import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { SpiffeError } from '../../../spiffe/errors.js';
import { parseX509Svid, verifyX509Svid } from '../../../spiffe/svid/x509.js';

/**
 * The X509-SVID profile checks (X509-SVID.md §4/§5) on certificates written by an independent
 * generator (@peculiar/x509's), one rule broken at a time. The parser reads certificates with
 * @peculiar/asn1-x509 directly (it once went through @peculiar/x509, several times slower); these
 * hold it to every rule.
 */
const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const KU = x509.KeyUsageFlags;
const EKU = x509.ExtendedKeyUsage;
let keys: webcrypto.CryptoKeyPair;
let ca: x509.X509Certificate;

beforeAll(async () => {
  keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  ca = await cert([
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(KU.keyCertSign | KU.cRLSign, true),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://svid.test' }]),
  ], 'CN=ca', 'CN=ca');
});

async function cert(extensions: x509.Extension[], subject = 'CN=leaf', issuer = 'CN=ca'): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create({
    serialNumber: '0102', subject, issuer, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000),
    signingAlgorithm: alg, publicKey: keys.publicKey, signingKey: keys.privateKey, extensions,
  }, webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1]);
}

const der = (c: x509.X509Certificate): Buffer => Buffer.from(c.rawData);
const san = (...names: x509.JsonGeneralName[]): x509.Extension => new x509.SubjectAlternativeNameExtension(names);
const uri = (value: string): x509.JsonGeneralName => ({ type: 'url', value });
const leafKu = (usages = KU.digitalSignature, critical = true): x509.Extension => new x509.KeyUsagesExtension(usages, critical);
const mtls = (): x509.Extension => new x509.ExtendedKeyUsageExtension([EKU.serverAuth, EKU.clientAuth]);

function refusal(chain: Buffer[]): string {
  try {
    parseX509Svid(chain);
  } catch (err) {
    expect(err).toBeInstanceOf(SpiffeError);
    expect((err as SpiffeError).code).toBe('invalid_x509_svid');
    return (err as Error).message;
  }
  throw new Error('accepted');
}

describe('X509-SVID parsing', () => {
  it('reads a valid leaf: its ID, DNS names and validity', async () => {
    const c = await cert([san(uri('spiffe://svid.test/web'), { type: 'dns', value: 'web.svid.test' }), leafKu(), mtls(), new x509.BasicConstraintsExtension(false, undefined, true)]);
    const svid = parseX509Svid([der(c)]);
    expect(svid.spiffeId.toString()).toBe('spiffe://svid.test/web');
    expect(svid.dnsNames).toEqual(['web.svid.test']);
    expect(svid.notBefore.getTime()).toBe(c.notBefore.getTime());
    expect(svid.notAfter.getTime()).toBe(c.notAfter.getTime());
    expect(verifyX509Svid([der(c)], (td) => (td === 'svid.test' ? { trustDomain: td, x509Authorities: [der(ca)], jwtAuthorities: [] } : undefined), new Date()).spiffeId.path).toBe('/web');
  });

  it('accepts a leaf without EKU and an intermediate that may sign', async () => {
    const leaf = await cert([san(uri('spiffe://svid.test/a')), leafKu(KU.digitalSignature | KU.keyEncipherment)]);
    expect(parseX509Svid([der(leaf), der(ca)]).spiffeId.path).toBe('/a');
  });

  it.each<[string, () => Promise<x509.Extension[]>, RegExp]>([
    ['no URI SAN', async () => [san({ type: 'dns', value: 'a.test' }), leafKu()], /exactly one URI SAN, found 0/],
    ['no SAN extension', async () => [leafKu()], /exactly one URI SAN, found 0/],
    ['two URI SANs', async () => [san(uri('spiffe://svid.test/a'), uri('spiffe://svid.test/b')), leafKu()], /exactly one URI SAN, found 2/],
    ['a URI SAN that is not a SPIFFE ID', async () => [san(uri('https://svid.test/a')), leafKu()], /not a valid SPIFFE ID/],
    ['a trust domain ID', async () => [san(uri('spiffe://svid.test')), leafKu()], /non-root path/],
    ['a CA leaf', async () => [san(uri('spiffe://svid.test/a')), leafKu(), new x509.BasicConstraintsExtension(true, undefined, true)], /must not be a CA/],
    ['no key usage', async () => [san(uri('spiffe://svid.test/a'))], /must have a key usage extension/],
    ['a key usage not critical', async () => [san(uri('spiffe://svid.test/a')), leafKu(KU.digitalSignature, false)], /must be critical/],
    ['no digitalSignature', async () => [san(uri('spiffe://svid.test/a')), leafKu(KU.keyEncipherment)], /must include digitalSignature/],
    ['keyCertSign', async () => [san(uri('spiffe://svid.test/a')), leafKu(KU.digitalSignature | KU.keyCertSign)], /must not include keyCertSign or cRLSign/],
    ['cRLSign', async () => [san(uri('spiffe://svid.test/a')), leafKu(KU.digitalSignature | KU.cRLSign)], /must not include keyCertSign or cRLSign/],
    ['an EKU without clientAuth', async () => [san(uri('spiffe://svid.test/a')), leafKu(), new x509.ExtendedKeyUsageExtension([EKU.serverAuth])], /both serverAuth and clientAuth/],
    ['an EKU without serverAuth', async () => [san(uri('spiffe://svid.test/a')), leafKu(), new x509.ExtendedKeyUsageExtension([EKU.clientAuth])], /both serverAuth and clientAuth/],
  ])('refuses a leaf with %s', async (_what, extensions, message) => {
    expect(refusal([der(await cert(await extensions()))])).toMatch(message);
  });

  it('refuses an intermediate that is not a CA or may not sign certificates', async () => {
    const leaf = der(await cert([san(uri('spiffe://svid.test/a')), leafKu()]));
    const notCa = await cert([new x509.KeyUsagesExtension(KU.keyCertSign, true)], 'CN=i');
    const noSign = await cert([new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(KU.cRLSign, true)], 'CN=i');
    expect(refusal([leaf, der(notCa)])).toMatch(/intermediate 1 must be a CA certificate/);
    expect(refusal([leaf, der(noSign)])).toMatch(/intermediate 1 must allow keyCertSign/);
  });

  it('refuses what is not a certificate, and a certificate whose extension is not DER, as invalid SVIDs', async () => {
    expect(refusal([Buffer.from('30030201', 'hex')])).toMatch(/not valid DER/);
    expect(refusal([])).toMatch(/empty/);
    // a key usage extension whose value is an INTEGER, not a BIT STRING
    const broken = new x509.Extension('2.5.29.15', true, new Uint8Array([0x02, 0x01, 0x05]));
    expect(refusal([der(await cert([san(uri('spiffe://svid.test/a')), broken]))])).toMatch(/not valid DER/);
  });
});

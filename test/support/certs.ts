import 'reflect-metadata';
import { generateKeyPairSync, webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { createCaCertificate } from '../../ca/authority/ca-certificate.js';
import { profileOf, type KeyType } from '../../ca/authority/key-types.js';
import { issuerPartsOf } from '../../ca/authority/signers.js';
import { keyIdentifier, type SubjectPublicKey } from '../../ca/issuance/spki.js';
import { authorityKeyIdExtension, type IssuerTemplate, type LeafFields } from '../../ca/issuance/leaf-template.js';

export interface TestCaCert {
  readonly der: Buffer;
  readonly keyType: KeyType;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly template: IssuerTemplate;
}

const pairOf = (keyType: KeyType) =>
  keyType === 'rsa-2048'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: keyType === 'ec-p384' ? 'P-384' : 'P-256' });

export async function testCaCertificate(trustDomain: string, keyType: KeyType = 'ec-p256', notAfter = new Date(Date.now() + 86400_000)): Promise<TestCaCert> {
  const { privateKey, publicKey } = pairOf(keyType);
  const der = await createCaCertificate({
    trustDomain,
    keyType,
    privateKey,
    publicKey,
    serial: Buffer.from('01020304050607080910111213141516', 'hex'),
    notBefore: new Date(Date.now() - 60_000),
    notAfter,
  });
  const profile = profileOf(keyType);
  const parts = issuerPartsOf(der);
  return {
    der,
    keyType,
    privateKey,
    publicKey,
    template: {
      signatureAlgorithm: profile.x509SignatureAlgorithm,
      issuerName: parts.subject,
      authorityKeyIdExtension: authorityKeyIdExtension(parts.keyId),
      signingKey: privateKey,
      hash: profile.hash,
    },
  };
}

/**
 * The slow reference path: the same leaf profile written by @peculiar/x509's generator. Tests
 * compare the fast DER template against it field by field.
 */
export async function referenceLeaf(ca: TestCaCert, leaf: LeafFields, subjectKey: SubjectPublicKey): Promise<Buffer> {
  const profile = profileOf(ca.keyType);
  const subtle = webcrypto.subtle;
  const signingKey = await subtle.importKey('pkcs8', ca.privateKey.export({ format: 'der', type: 'pkcs8' }), profile.webCryptoImport, false, ['sign']);
  const publicKey = new x509.PublicKey(subjectKey.spki);
  const caCert = new x509.X509Certificate(ca.der);
  const subject: x509.JsonName = [{ '2.5.4.10': [{ utf8String: 'Cairn' }] as unknown as string[] }];
  if (leaf.dnsNames[0]) subject.push({ '2.5.4.3': [{ utf8String: leaf.dnsNames[0] }] as unknown as string[] });
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: leaf.serial.toString('hex'),
      subject,
      issuer: caCert.subjectName,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      publicKey,
      signingKey,
      signingAlgorithm: profile.webCryptoSign,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.SubjectKeyIdentifierExtension(keyIdentifier(subjectKey.keyBits).toString('hex')),
        new x509.AuthorityKeyIdentifierExtension(caCert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: leaf.spiffeId }, ...leaf.dnsNames.map((d) => ({ type: 'dns' as const, value: d }))]),
      ],
    },
    webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1],
  );
  return Buffer.from(cert.rawData);
}

import 'reflect-metadata';
import { webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { trustDomainId } from '../../spiffe/id.js';
import { keyIdentifier, subjectPublicKeyFromDer } from '../issuance/spki.js';
import { profileOf, type KeyType } from './key-types.js';

export interface CaCertificateRequest {
  readonly trustDomain: string;
  readonly keyType: KeyType;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** Positive big-endian serial bytes. */
  readonly serial: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * A self-signed signing certificate per X509-SVID.md §4.1: CA=true, keyCertSign+cRLSign (critical),
 * URI SAN spiffe://<td> with no path. The Subject carries the serial as serialNumber so each CA
 * certificate's Subject is unique: Go's chain builder gives up after ~100 same-Subject candidates.
 * Written once per rotation, so the general-purpose generator is fine here.
 */
export async function createCaCertificate(req: CaCertificateRequest): Promise<Buffer> {
  const profile = profileOf(req.keyType);
  const subtle = webcrypto.subtle;
  const signingKey = await subtle.importKey(
    'pkcs8',
    req.privateKey.export({ format: 'der', type: 'pkcs8' }),
    profile.webCryptoImport,
    false,
    ['sign'],
  );
  const spki = req.publicKey.export({ format: 'der', type: 'spki' });
  const publicKey = await subtle.importKey('spki', spki, profile.webCryptoImport, true, ['verify']);
  const skid = keyIdentifier(subjectPublicKeyFromDer(spki).keyBits).toString('hex');
  const serialHex = req.serial.toString('hex');
  const name: x509.JsonName = [
    { '2.5.4.6': ['US'] },
    { '2.5.4.10': ['Cairn'] },
    { '2.5.4.3': [`Cairn CA ${req.trustDomain}`.slice(0, 64)] },
    { '2.5.4.5': [serialHex] },
  ];
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialHex,
      subject: name,
      issuer: name,
      notBefore: req.notBefore,
      notAfter: req.notAfter,
      publicKey,
      signingKey,
      signingAlgorithm: profile.webCryptoSign,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectKeyIdentifierExtension(skid),
        new x509.AuthorityKeyIdentifierExtension(skid),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: trustDomainId(req.trustDomain) }]),
      ],
    },
    webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1],
  );
  return Buffer.from(cert.rawData);
}

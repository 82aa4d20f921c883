import 'reflect-metadata';
import { X509Certificate as NodeX509, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { CairnError } from '../../lib/errors.js';
import { trustDomainId } from '../../spiffe/id.js';
import { trustDomainNameConstraints } from '../authority/ca-certificate.js';
import { profileOf } from '../authority/key-types.js';
import type { Sealer } from '../authority/sealing.js';
import { sealingContext } from '../authority/signers.js';
import type { AuthorityKey } from '../authority/store.js';

type Crypto = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[1];

/**
 * A PKCS#10 request for a prepared X.509 authority key: the subject the CA would give its own
 * certificate, and the extensions a signing certificate needs (X509-SVID §4.1): cA with
 * pathLenConstraint 0, keyCertSign+cRLSign, URI SAN spiffe://<td>, and the trust domain's URI name
 * constraint. An upstream that honours requested extensions (openssl x509 -req -copy_extensions
 * copy, openssl ca with copy_extensions) reproduces them; import checks what came back.
 */
export async function csrForKey(key: AuthorityKey, sealer: Sealer, nameConstraints = true): Promise<string> {
  const profile = profileOf(key.keyType);
  const subtle = webcrypto.subtle;
  const pkcs8 = sealer.open(key.privateKeySealed, sealingContext(key.trustDomain, key.id));
  const privateKey = await subtle.importKey('pkcs8', pkcs8, profile.webCryptoImport, false, ['sign']);
  const publicKey = await subtle.importKey('spki', key.publicKey, profile.webCryptoImport, true, ['verify']);
  const req = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: [{ '2.5.4.6': ['US'] }, { '2.5.4.10': ['Cairn'] }, { '2.5.4.3': [`Cairn CA ${key.trustDomain}`.slice(0, 64)] }, { '2.5.4.5': [key.id] }],
      keys: { privateKey, publicKey } as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'],
      signingAlgorithm: profile.webCryptoSign,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: trustDomainId(key.trustDomain) }]),
        ...(nameConstraints ? [trustDomainNameConstraints(key.trustDomain)].filter((e) => e !== undefined) : []),
      ],
    },
    webcrypto as unknown as Crypto,
  );
  return req.toString('pem') + '\n';
}

/**
 * What an imported CA certificate must be for the prepared key: that key's certificate, a CA that
 * may sign (cA, keyCertSign), and the trust domain's signing certificate by its SPIFFE ID: exactly
 * one URI SAN, spiffe://<td> with no path (X509-SVID §4.1; go-spiffe and Cairn's own CAs carry it).
 */
export function checkImportedCertificate(der: Buffer, key: AuthorityKey, field: string): void {
  const node = new NodeX509(der);
  if (!node.publicKey.export({ format: 'der', type: 'spki' }).equals(key.publicKey)) {
    throw new CairnError('upstream_key_mismatch', `${field}: the certificate is not for the prepared key ${key.id} (its public key differs): sign the CSR that cairn authority prepare --csr-out wrote`, {
      details: { field, id: key.id },
    });
  }
  const cert = new x509.X509Certificate(der);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!bc?.ca || !ku || !(ku.usages & x509.KeyUsageFlags.keyCertSign)) {
    throw new CairnError('upstream_not_ca', `${field}: the certificate is not a signing certificate (it needs basicConstraints cA and keyUsage keyCertSign): sign it as a CA, e.g. openssl x509 -req -copy_extensions copy`, {
      details: { field },
    });
  }
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san ? san.names.items.filter((n) => n.type === 'url').map((n) => n.value) : [];
  const expected = trustDomainId(key.trustDomain);
  if (uris.length !== 1 || uris[0] !== expected) {
    throw new CairnError(
      uris.length === 0 ? 'invalid_upstream_ca' : 'wrong_trust_domain',
      `${field}: the certificate must carry exactly one URI SAN, ${expected} (it has ${uris.length === 0 ? 'none' : uris.join(', ')}); copy the CSR's extensions when signing (openssl x509 -req -copy_extensions copy)`,
      { details: { field, uris } },
    );
  }
}

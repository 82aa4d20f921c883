import 'reflect-metadata';
import { webcrypto, type KeyObject } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints } from '@peculiar/asn1-x509';
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
  /** Add the URI name constraint for the trust domain (see trustDomainNameConstraints). Default true. */
  readonly nameConstraints?: boolean;
  /** Sign with an upstream CA instead of self-signing: the certificate becomes an intermediate. */
  readonly issuer?: CaIssuer;
}

/** An upstream CA that signs the trust domain's CA certificate (a disk upstream authority). */
export interface CaIssuer {
  /** The upstream CA's certificate, DER. */
  readonly certificate: Buffer;
  readonly privateKey: KeyObject;
  readonly keyType: KeyType;
}

const NAME_CONSTRAINTS_OID = '2.5.29.30';

/**
 * The CA may sign only SVIDs of its own trust domain. RFC 5280 §4.2.1.10 constrains a URI by its
 * host: a host without a leading period names exactly that host, so the permitted subtree is the
 * trust domain name itself (not "spiffe://<td>"). OpenSSL and BoringSSL match it exactly; Go's
 * verifier also lets it match subdomains (spiffe://evil.<td>/… is another trust domain), so the
 * subdomains are excluded explicitly (".<td>", which by the same section means one or more labels
 * more). DNS SANs of leaves are not constrained (a constraint binds only its own name type).
 * Returns undefined for a trust domain that is an IPv4 literal: RFC 5280 has URI constraints only
 * for host names, and Go rejects every URI with an IP host under any URI constraint.
 */
export function trustDomainNameConstraints(trustDomain: string): x509.Extension | undefined {
  if (isIPv4(trustDomain)) return undefined;
  const subtree = (host: string): GeneralSubtrees => new GeneralSubtrees([new GeneralSubtree({ base: new GeneralName({ uniformResourceIdentifier: host }) })]);
  const value = AsnConvert.serialize(new NameConstraints({ permittedSubtrees: subtree(trustDomain), excludedSubtrees: subtree(`.${trustDomain}`) }));
  // RFC 5280: conforming CAs MUST mark this extension critical.
  return new x509.Extension(NAME_CONSTRAINTS_OID, true, value);
}

/**
 * A self-signed signing certificate per X509-SVID.md §4.1: CA=true with pathLenConstraint 0 (it
 * signs leaves only; an intermediate under an upstream root keeps 0 for the same reason, and the
 * upstream's own certificates must allow one CA below them), keyCertSign+cRLSign (critical), URI SAN
 * spiffe://<td> with no path, and the trust domain's URI name constraint. The Subject carries the
 * serial as serialNumber so each CA certificate's Subject is unique: Go's chain builder gives up
 * after ~100 same-Subject candidates. Written once per rotation, so the general-purpose generator
 * is fine here.
 */
export async function createCaCertificate(req: CaCertificateRequest): Promise<Buffer> {
  const profile = profileOf(req.keyType);
  const signer = req.issuer ? profileOf(req.issuer.keyType) : profile;
  const subtle = webcrypto.subtle;
  const signingKey = await subtle.importKey(
    'pkcs8',
    (req.issuer?.privateKey ?? req.privateKey).export({ format: 'der', type: 'pkcs8' }),
    signer.webCryptoImport,
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
  const upstream = req.issuer ? new x509.X509Certificate(req.issuer.certificate) : undefined;
  // RFC 5280 §4.2.1.1: the AKI is the issuer's SKI when it has one (else the usual hash of its key).
  const authorityKeyId = upstream
    ? (upstream.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? keyIdentifier(subjectPublicKeyFromDer(Buffer.from(upstream.publicKey.rawData)).keyBits).toString('hex'))
    : skid;
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialHex,
      subject: name,
      issuer: upstream ? upstream.subjectName : name,
      notBefore: req.notBefore,
      notAfter: req.notAfter,
      publicKey,
      signingKey,
      signingAlgorithm: signer.webCryptoSign,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectKeyIdentifierExtension(skid),
        new x509.AuthorityKeyIdentifierExtension(authorityKeyId),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: trustDomainId(req.trustDomain) }]),
        ...(req.nameConstraints === false ? [] : [trustDomainNameConstraints(req.trustDomain)].filter((e) => e !== undefined)),
      ],
    },
    webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1],
  );
  return Buffer.from(cert.rawData);
}

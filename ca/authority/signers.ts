import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { children, raw, readWhole, Tag, expect } from '../../lib/der.js';
import { authorityKeyIdExtension, type IssuerTemplate } from '../issuance/leaf-template.js';
import { keyIdentifier, readSubjectPublicKey } from '../issuance/spki.js';
import { profileOf } from './key-types.js';
import type { Sealer } from './sealing.js';
import type { AuthorityKey } from './store.js';
import { intermediatesOf } from '../upstream/published.js';

export interface X509Signer {
  readonly id: string;
  readonly certificate: Buffer;
  /** What follows a leaf it signs: nothing for a self-signed CA; else its certificate and the upstream intermediates. */
  readonly intermediates?: readonly Buffer[];
  readonly notAfter: Date;
  readonly template: IssuerTemplate;
}

export interface JwtSigner {
  readonly kid: string;
  readonly alg: 'ES256' | 'ES384' | 'RS256';
  readonly notAfter: Date;
  /** base64url of the exact header {"alg","kid","typ":"JWT"}, encoded once per key. */
  readonly encodedHeader: string;
  sign(signingInput: Buffer): Buffer;
}

/** AAD for a sealed authority key: binds the ciphertext to its trust domain and id. */
export const sealingContext = (trustDomain: string, id: string): string => `cairn-authority-key:${trustDomain}:${id}`;

function openPrivateKey(key: AuthorityKey, sealer: Sealer): KeyObject {
  const pkcs8 = sealer.open(key.privateKeySealed, sealingContext(key.trustDomain, key.id));
  return createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
}

/** Reads the subject Name and key identifier of a CA certificate straight from its DER. */
export function issuerPartsOf(certificate: Buffer): { subject: Buffer; keyId: Buffer } {
  const [tbs] = children(expect(readWhole(certificate), Tag.SEQUENCE, 'Certificate'));
  const fields = children(expect(tbs!, Tag.SEQUENCE, 'TBSCertificate'));
  const base = fields[0]!.tag === 0xa0 ? 1 : 0;
  const subject = fields[base + 4]!;
  const spki = readSubjectPublicKey(fields[base + 5]!);
  return { subject: raw(subject), keyId: keyIdentifier(spki.keyBits) };
}

export function x509SignerOf(key: AuthorityKey, sealer: Sealer): X509Signer {
  if (key.kind !== 'x509' || !key.certificate) throw new TypeError('not an X.509 authority key');
  const profile = profileOf(key.keyType);
  const { subject, keyId } = issuerPartsOf(key.certificate);
  return {
    id: key.id,
    certificate: key.certificate,
    intermediates: intermediatesOf(key),
    notAfter: key.notAfter,
    template: {
      signatureAlgorithm: profile.x509SignatureAlgorithm,
      issuerName: subject,
      authorityKeyIdExtension: authorityKeyIdExtension(keyId),
      signingKey: openPrivateKey(key, sealer),
      hash: profile.hash,
    },
  };
}

export function jwtSignerOf(key: AuthorityKey, sealer: Sealer): JwtSigner {
  if (key.kind !== 'jwt') throw new TypeError('not a JWT authority key');
  const profile = profileOf(key.keyType);
  const privateKey = openPrivateKey(key, sealer);
  const ec = profile.jwsAlg.startsWith('ES');
  return {
    kid: key.id,
    alg: profile.jwsAlg,
    notAfter: key.notAfter,
    encodedHeader: Buffer.from(JSON.stringify({ alg: profile.jwsAlg, kid: key.id, typ: 'JWT' })).toString('base64url'),
    sign: (input) => sign(profile.hash, input, ec ? { key: privateKey, dsaEncoding: 'ieee-p1363' } : privateKey),
  };
}

import 'reflect-metadata';
import { webcrypto, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber } from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import { profileOf, type KeyType } from '../authority/key-types.js';
import { issuerPartsOf } from '../authority/signers.js';

const CRL_NUMBER_OID = '2.5.29.20';

export interface CrlRequest {
  /** DER of the CA certificate that signs the CRL: its Subject becomes the CRL's issuer, byte for byte. */
  readonly caCertificate: Buffer;
  readonly keyType: KeyType;
  readonly signingKey: KeyObject;
  readonly crlNumber: number;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly revoked: readonly { readonly serial: string; readonly revokedAt: Date }[];
}

/**
 * A CRL (RFC 5280 §5) signed by one CA: issuer = the CA's Subject, the CA's key identifier in the
 * authority key identifier extension, a CRL number, and one entry per revoked serial. Revocation
 * dates are whole seconds (UTCTime), and never after thisUpdate.
 */
export async function signCrl(req: CrlRequest): Promise<Buffer> {
  const profile = profileOf(req.keyType);
  const signingKey = await webcrypto.subtle.importKey('pkcs8', req.signingKey.export({ format: 'der', type: 'pkcs8' }), profile.webCryptoImport, false, ['sign']);
  const { subject, keyId } = issuerPartsOf(req.caCertificate);
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: new x509.Name(subject),
      thisUpdate: req.thisUpdate,
      nextUpdate: req.nextUpdate,
      signingAlgorithm: profile.webCryptoSign,
      signingKey,
      extensions: [
        new x509.AuthorityKeyIdentifierExtension(keyId.toString('hex')),
        new x509.Extension(CRL_NUMBER_OID, false, AsnConvert.serialize(new CRLNumber(req.crlNumber))),
      ],
      entries: req.revoked.map((r) => ({
        serialNumber: r.serial,
        revocationDate: r.revokedAt > req.thisUpdate ? req.thisUpdate : r.revokedAt,
      })),
    },
    webcrypto as unknown as Parameters<typeof x509.X509CrlGenerator.create>[1],
  );
  return Buffer.from(crl.rawData);
}

import { sign, type KeyObject } from 'node:crypto';
import {
  bitString, bool, explicit, implicitPrimitive, octetString, oid, seq, set, smallInteger, time, tlv, unsignedInteger, Tag,
} from '../../lib/der.js';
import { keyIdentifier, type SubjectPublicKey } from './spki.js';

/**
 * The issuance fast path: a leaf X509-SVID TBSCertificate written straight into DER. Everything
 * constant per issuing CA is encoded once (IssuerTemplate); per certificate only the serial,
 * validity, subject, key, key identifier and SANs are written. Proven equal in meaning to the
 * @peculiar/x509 generator by test/unit/issuance/leaf-template.test.ts.
 */
export interface IssuerTemplate {
  readonly signatureAlgorithm: Buffer;
  /** DER Name of the issuing CA (its certificate's subject, verbatim). */
  readonly issuerName: Buffer;
  /** The complete AuthorityKeyIdentifier extension, pointing at the CA's key identifier. */
  readonly authorityKeyIdExtension: Buffer;
  readonly signingKey: KeyObject;
  readonly hash: 'sha256' | 'sha384';
}

export interface LeafFields {
  readonly serial: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly publicKey: SubjectPublicKey;
}

const VERSION_3 = explicit(0, smallInteger(2));
const OID_O = oid('2.5.4.10');
const OID_CN = oid('2.5.4.3');
const ORGANIZATION = set(seq(OID_O, tlv(Tag.UTF8_STRING, Buffer.from('Cairn'))));

/** `id` as DER (oid()): the OIDs are encoded once, not per certificate. */
function extension(id: Buffer, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(id, bool(true), octetString(value)) : seq(id, octetString(value));
}

const OID_SUBJECT_KEY_ID = oid('2.5.29.14');
const OID_SUBJECT_ALT_NAME = oid('2.5.29.17');

/** SPIRE's leaf profile: CA=false (the DEFAULT, so an empty SEQUENCE in DER), critical. */
const BASIC_CONSTRAINTS = extension(oid('2.5.29.19'), true, seq());
/** digitalSignature | keyEncipherment | keyAgreement = bits 0,2,4 → 0xA8 with 3 unused bits. */
const KEY_USAGE = extension(oid('2.5.29.15'), true, bitString(Buffer.from([0xa8]), 3));
const EXT_KEY_USAGE = extension(oid('2.5.29.37'), false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2')));

export function authorityKeyIdExtension(caKeyId: Buffer): Buffer {
  return extension(oid('2.5.29.35'), false, seq(implicitPrimitive(0, caKeyId)));
}

function subjectName(dnsNames: readonly string[]): Buffer {
  const first = dnsNames[0];
  return first === undefined ? seq(ORGANIZATION) : seq(ORGANIZATION, set(seq(OID_CN, tlv(Tag.UTF8_STRING, Buffer.from(first)))));
}

function subjectAltName(spiffeId: string, dnsNames: readonly string[]): Buffer {
  const names = [implicitPrimitive(6, Buffer.from(spiffeId, 'latin1'))];
  for (const dns of dnsNames) names.push(implicitPrimitive(2, Buffer.from(dns, 'latin1')));
  return extension(OID_SUBJECT_ALT_NAME, false, seq(...names));
}

export function buildLeafTbs(issuer: IssuerTemplate, leaf: LeafFields): Buffer {
  return seq(
    VERSION_3,
    unsignedInteger(leaf.serial),
    issuer.signatureAlgorithm,
    issuer.issuerName,
    seq(time(leaf.notBefore), time(leaf.notAfter)),
    subjectName(leaf.dnsNames),
    leaf.publicKey.spki,
    explicit(
      3,
      seq(
        BASIC_CONSTRAINTS,
        KEY_USAGE,
        EXT_KEY_USAGE,
        extension(OID_SUBJECT_KEY_ID, false, octetString(keyIdentifier(leaf.publicKey.keyBits))),
        issuer.authorityKeyIdExtension,
        subjectAltName(leaf.spiffeId, leaf.dnsNames),
      ),
    ),
  );
}

/** Signs a TBSCertificate and wraps it into a Certificate. */
export function signCertificate(issuer: IssuerTemplate, tbs: Buffer): Buffer {
  const signature = sign(issuer.hash, tbs, issuer.signingKey);
  return seq(tbs, issuer.signatureAlgorithm, bitString(signature));
}

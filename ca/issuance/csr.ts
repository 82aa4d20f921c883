import { verify as cryptoVerify } from 'node:crypto';
import { children, content, decodeOid, DerError, expect, raw, readWhole, Tag, type Node } from '../../lib/der.js';
import { CairnError } from '../../lib/errors.js';
import { verifyEcdsa, type EcdsaHash } from './ecdsa.js';
import { curveOf, publicKeyObject, readSubjectPublicKey, type SubjectPublicKey } from './spki.js';

/**
 * A CSR is only a proof of possession and a public key. Its subject and its requested extensions
 * (SANs included) are ignored: identity comes from the caller's authorization, never from the CSR.
 */
export interface VerifiedCsr {
  readonly publicKey: SubjectPublicKey;
}

const MAX_CSR_BYTES = 16 * 1024;
const SIGNATURE_ALGORITHMS: Record<string, { hash: EcdsaHash; family: 'ec' | 'rsa' }> = {
  '1.2.840.10045.4.3.2': { hash: 'sha256', family: 'ec' },
  '1.2.840.10045.4.3.3': { hash: 'sha384', family: 'ec' },
  '1.2.840.10045.4.3.4': { hash: 'sha512', family: 'ec' },
  '1.2.840.113549.1.1.11': { hash: 'sha256', family: 'rsa' },
  '1.2.840.113549.1.1.12': { hash: 'sha384', family: 'rsa' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', family: 'rsa' },
};
const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const BASIC_CONSTRAINTS = '2.5.29.19';

const bad = (message: string, cause?: unknown): CairnError =>
  new CairnError('invalid_csr', message, cause === undefined ? undefined : { cause });

/** Accepts PEM ("CERTIFICATE REQUEST" / "NEW CERTIFICATE REQUEST") or base64/base64url DER. */
export function decodeCsrText(text: string): Buffer {
  const trimmed = text.trim();
  let der: Buffer;
  if (trimmed.startsWith('-----BEGIN')) {
    const m = /^-----BEGIN (NEW )?CERTIFICATE REQUEST-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END (NEW )?CERTIFICATE REQUEST-----$/.exec(trimmed);
    if (!m) throw bad('CSR PEM must be a single CERTIFICATE REQUEST block');
    der = Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64');
  } else {
    if (!/^[A-Za-z0-9+/_=-]+$/.test(trimmed)) throw bad('CSR must be PEM or base64-encoded DER');
    der = Buffer.from(trimmed, trimmed.includes('-') || trimmed.includes('_') ? 'base64url' : 'base64');
  }
  if (der.length === 0) throw bad('CSR is empty');
  return der;
}

function requestsCa(attributes: Node): boolean {
  for (const attr of children(attributes)) {
    const [type, values] = children(expect(attr, Tag.SEQUENCE, 'Attribute'));
    if (!type || !values || decodeOid(type) !== EXTENSION_REQUEST) continue;
    for (const extensions of children(expect(values, Tag.SET, 'Attribute values'))) {
      for (const ext of children(expect(extensions, Tag.SEQUENCE, 'Extensions'))) {
        const parts = children(expect(ext, Tag.SEQUENCE, 'Extension'));
        if (!parts[0] || decodeOid(parts[0]) !== BASIC_CONSTRAINTS) continue;
        const value = parts[parts.length - 1]!;
        const bc = children(expect(readWhole(content(expect(value, Tag.OCTET_STRING, 'extnValue'))), Tag.SEQUENCE, 'BasicConstraints'));
        if (bc[0]?.tag === Tag.BOOLEAN && content(bc[0])[0] !== 0) return true;
      }
    }
  }
  return false;
}

/** A CSR whose structure and key passed our rules, but whose signature has not been checked yet. */
export interface UnverifiedCsr {
  readonly publicKey: SubjectPublicKey;
  readonly hash: EcdsaHash;
  readonly info: Buffer;
  readonly signature: Buffer;
}

/** Parses a PKCS#10 CSR and verifies its self-signature (proof of possession of the private key). */
export function verifyCsr(der: Buffer): VerifiedCsr {
  return checkCsrSignature(readCsr(der));
}

/**
 * The signature check alone, for callers that first decide (cheaply, e.g. from a token lookup)
 * whether the request deserves any cryptography at all.
 */
export function checkCsrSignature(csr: UnverifiedCsr): VerifiedCsr {
  let ok = false;
  try {
    const curve = curveOf(csr.publicKey.keyType);
    ok = curve
      ? verifyEcdsa(curve, csr.publicKey.keyBits, csr.hash, csr.info, csr.signature)
      : cryptoVerify(csr.hash, csr.info, publicKeyObject(csr.publicKey), csr.signature);
  } catch (err) {
    throw badSignature(err);
  }
  if (!ok) throw badSignature();
  return { publicKey: csr.publicKey };
}

const badSignature = (cause?: unknown): CairnError =>
  new CairnError('csr_signature_invalid', 'CSR signature does not verify with its public key', cause === undefined ? undefined : { cause });

/**
 * Structure and key rules only, no cryptography: size, DER, a key Cairn certifies (P-256, P-384,
 * RSA 2048–4096 with exponent 65537), a signature algorithm that fits it, no CA request.
 */
export function readCsr(der: Buffer): UnverifiedCsr {
  if (der.length > MAX_CSR_BYTES) throw bad(`CSR is larger than ${MAX_CSR_BYTES} bytes`);
  let info: Node, algorithm: string, signature: Buffer, publicKey: SubjectPublicKey;
  try {
    const top = children(expect(readWhole(der), Tag.SEQUENCE, 'CertificationRequest'));
    if (top.length !== 3) throw bad('CSR must have exactly three parts');
    info = expect(top[0]!, Tag.SEQUENCE, 'CertificationRequestInfo');
    const [algOid] = children(expect(top[1]!, Tag.SEQUENCE, 'signatureAlgorithm'));
    algorithm = decodeOid(algOid!);
    const sigBits = content(expect(top[2]!, Tag.BIT_STRING, 'signature'));
    if (sigBits.length < 2 || sigBits[0] !== 0) throw bad('CSR signature is malformed');
    signature = sigBits.subarray(1);
    const fields = children(info);
    if (fields.length < 3) throw bad('CertificationRequestInfo is incomplete');
    const version = content(expect(fields[0]!, Tag.INTEGER, 'version'));
    if (version.length !== 1 || version[0] !== 0) throw bad('CSR version must be 1 (encoded 0)');
    expect(fields[1]!, Tag.SEQUENCE, 'subject');
    publicKey = readSubjectPublicKey(fields[2]!);
    const attributes = fields[3];
    if (attributes && attributes.tag === 0xa0 && requestsCa(attributes)) {
      throw bad('CSR requests a CA certificate; Cairn issues only leaf SVIDs');
    }
  } catch (err) {
    if (err instanceof CairnError) throw err;
    if (err instanceof DerError) throw bad(`CSR is not valid DER: ${err.message}`, err);
    throw bad('CSR could not be parsed', err);
  }
  const alg = SIGNATURE_ALGORITHMS[algorithm];
  if (!alg) throw bad(`CSR signature algorithm ${algorithm} is not accepted`);
  if ((alg.family === 'rsa') !== (publicKey.keyType === 'rsa')) throw bad('CSR signature algorithm does not match its key');
  return { publicKey, hash: alg.hash, info: raw(info), signature };
}

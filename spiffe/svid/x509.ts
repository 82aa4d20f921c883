import 'reflect-metadata';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import * as asn1 from '@peculiar/asn1-x509';
import { SpiffeError } from '../errors.js';
import { SpiffeId } from '../id.js';
import type { Bundle } from '../bundle/bundle.js';

export interface X509Svid {
  readonly spiffeId: SpiffeId;
  /** DER certificates, leaf first. */
  readonly certificates: readonly Buffer[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly dnsNames: readonly string[];
}

const invalid = (message: string, cause?: unknown): SpiffeError =>
  new SpiffeError('invalid_x509_svid', message, cause === undefined ? undefined : { cause });

/**
 * A certificate read with @peculiar/asn1-x509 alone, and only the extensions the profile looks at:
 * @peculiar/x509's X509Certificate re-encodes and re-parses every extension it knows, which made a
 * chain's profile check several times the cost of its signature checks (once per agent connection).
 */
interface ParsedCert {
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The first extension of each type, as @peculiar/x509's getExtension found it. */
  extension<T>(id: string, type: new () => T): { value: T; critical: boolean } | undefined;
}

function parseCert(der: Buffer): ParsedCert {
  let cert: asn1.Certificate;
  try {
    cert = AsnConvert.parse(der, asn1.Certificate);
  } catch (err) {
    throw invalid('certificate is not valid DER', err);
  }
  const extensions = cert.tbsCertificate.extensions ?? [];
  const parsed = new Map<string, { value: unknown; critical: boolean } | undefined>();
  return {
    notBefore: cert.tbsCertificate.validity.notBefore.getTime(),
    notAfter: cert.tbsCertificate.validity.notAfter.getTime(),
    extension<T>(id: string, type: new () => T) {
      if (!parsed.has(id)) {
        const ext = extensions.find((e) => e.extnID === id);
        try {
          parsed.set(id, ext && { value: AsnConvert.parse(ext.extnValue.buffer, type), critical: ext.critical });
        } catch (err) {
          throw invalid(`certificate extension ${id} is not valid DER`, err);
        }
      }
      return parsed.get(id) as { value: T; critical: boolean } | undefined;
    },
  };
}

function sans(cert: ParsedCert): asn1.GeneralName[] {
  return cert.extension(asn1.id_ce_subjectAltName, asn1.SubjectAlternativeName)?.value ?? [];
}

const uriSans = (cert: ParsedCert): string[] => sans(cert).flatMap((n) => (n.uniformResourceIdentifier === undefined ? [] : [n.uniformResourceIdentifier]));
const dnsSans = (cert: ParsedCert): string[] => sans(cert).flatMap((n) => (n.dNSName === undefined ? [] : [n.dNSName]));

/** The X509-SVID leaf profile (X509-SVID.md §4/§5, as go-spiffe's ParseRaw enforces it). */
function checkLeafProfile(cert: ParsedCert): SpiffeId {
  const uris = uriSans(cert);
  if (uris.length !== 1) throw invalid(`leaf must have exactly one URI SAN, found ${uris.length}`);
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(uris[0]!);
  } catch (err) {
    throw invalid('leaf URI SAN is not a valid SPIFFE ID', err);
  }
  if (id.isTrustDomainId) throw invalid('leaf SPIFFE ID must have a non-root path');
  const bc = cert.extension(asn1.id_ce_basicConstraints, asn1.BasicConstraints);
  if (bc?.value.cA) throw invalid('leaf certificate must not be a CA');
  const ku = cert.extension(asn1.id_ce_keyUsage, asn1.KeyUsage);
  if (!ku) throw invalid('leaf certificate must have a key usage extension');
  if (!ku.critical) throw invalid('leaf key usage extension must be critical');
  const usages = ku.value.toNumber();
  if (!(usages & asn1.KeyUsageFlags.digitalSignature)) throw invalid('leaf key usage must include digitalSignature');
  if (usages & (asn1.KeyUsageFlags.keyCertSign | asn1.KeyUsageFlags.cRLSign)) {
    throw invalid('leaf key usage must not include keyCertSign or cRLSign');
  }
  const eku = cert.extension(asn1.id_ce_extKeyUsage, asn1.ExtendedKeyUsage);
  if (eku) {
    const purposes = eku.value.map(String);
    if (!purposes.includes(asn1.id_kp_serverAuth) || !purposes.includes(asn1.id_kp_clientAuth)) {
      throw invalid('leaf extended key usage must include both serverAuth and clientAuth');
    }
  }
  return id;
}

function checkSigningCert(cert: ParsedCert, what: string): void {
  const bc = cert.extension(asn1.id_ce_basicConstraints, asn1.BasicConstraints);
  if (!bc?.value.cA) throw invalid(`${what} must be a CA certificate`);
  const ku = cert.extension(asn1.id_ce_keyUsage, asn1.KeyUsage);
  if (!ku || !(ku.value.toNumber() & asn1.KeyUsageFlags.keyCertSign)) throw invalid(`${what} must allow keyCertSign`);
}

/** Parses an X509-SVID chain (leaf first) and checks the leaf and intermediate profiles. */
export function parseX509Svid(chain: readonly Buffer[]): X509Svid {
  if (chain.length === 0) throw invalid('certificate chain is empty');
  const certs = chain.map(parseCert);
  const leaf = certs[0]!;
  const spiffeId = checkLeafProfile(leaf);
  certs.slice(1).forEach((c, i) => checkSigningCert(c, `intermediate ${i + 1}`));
  return {
    spiffeId,
    certificates: chain,
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
    dnsNames: dnsSans(leaf),
  };
}

/** Splits concatenated DER certificates (the Workload API's chain and bundle encoding). */
export function splitDerCertificates(blob: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < blob.length; ) {
    if (blob[at] !== 0x30 || at + 2 > blob.length) throw invalid('not a concatenation of DER certificates');
    let len = blob[at + 1]!;
    let header = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n < 1 || n > 4 || at + 2 + n > blob.length) throw invalid('bad DER length');
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + blob[at + 2 + i]!;
      header += n;
    }
    const end = at + header + len;
    if (end > blob.length) throw invalid('truncated DER certificate');
    out.push(blob.subarray(at, end));
    at = end;
  }
  return out;
}

function within(cert: NodeX509, now: Date, what: string): void {
  if (now.getTime() < new Date(cert.validFrom).getTime()) throw invalid(`${what} is not yet valid`);
  if (now.getTime() > new Date(cert.validTo).getTime()) throw invalid(`${what} has expired`);
}

/** A verified X.509-SVID, and what its verification rested on: the authority it led to and when every certificate on the path was valid. */
export interface VerifiedX509Svid {
  readonly svid: X509Svid;
  /** The bundle's authority (DER) the path ended at. */
  readonly anchor: Buffer;
  /** The leaf's serial number, lowercase hex. */
  readonly serial: string;
  /** The overlap of the validity periods of every certificate on the path, the authority's included. */
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * X509-SVID.md §5: path validation against the bundle of the leaf's own trust domain only, then the
 * leaf checks. `bundleFor` must never pool trust domains.
 */
export function verifyX509Svid(
  chain: readonly Buffer[],
  bundleFor: (trustDomain: string) => Bundle | undefined,
  now: Date,
): X509Svid {
  return verifyX509SvidPath(chain, bundleFor, now).svid;
}

/** verifyX509Svid, saying what the verification rested on; `parsed` is the chain's parseX509Svid when the caller has it. */
export function verifyX509SvidPath(
  chain: readonly Buffer[],
  bundleFor: (trustDomain: string) => Bundle | undefined,
  now: Date,
  parsed?: X509Svid,
): VerifiedX509Svid {
  const svid = parsed ?? parseX509Svid(chain);
  const bundle = bundleFor(svid.spiffeId.trustDomain);
  if (!bundle) throw invalid(`no bundle for trust domain ${svid.spiffeId.trustDomain}`);
  const roots = bundle.x509Authorities.map((der) => new NodeX509(der));
  const path = chain.map((der) => new NodeX509(der));
  path.forEach((c, i) => within(c, now, i === 0 ? 'leaf' : `intermediate ${i}`));
  for (let i = 0; i < path.length; i++) {
    const cert = path[i]!;
    const at = roots.findIndex((r) => cert.checkIssued(r) && cert.verify(r.publicKey));
    if (at >= 0) {
      const root = roots[at]!;
      within(root, now, 'root');
      const used = [...path.slice(0, i + 1), root];
      return {
        svid,
        anchor: Buffer.from(bundle.x509Authorities[at]!),
        serial: path[0]!.serialNumber.toLowerCase(),
        notBefore: new Date(Math.max(...used.map((c) => new Date(c.validFrom).getTime()))),
        notAfter: new Date(Math.min(...used.map((c) => new Date(c.validTo).getTime()))),
      };
    }
    const next = path[i + 1];
    if (!next || !cert.checkIssued(next) || !cert.verify(next.publicKey)) {
      throw invalid('certificate chain does not lead to an authority in the trust domain bundle');
    }
  }
  throw invalid('certificate chain does not lead to an authority in the trust domain bundle');
}

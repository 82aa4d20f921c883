import { createHash, createPublicKey, verify as verifySignature, X509Certificate } from 'node:crypto';
import { CairnError } from '../../lib/errors.js';
import { pemToDerList } from '../../spiffe/bundle/bundle.js';

/**
 * x509pop: a device proves it holds the key of a certificate that chains to a manufacturer CA the
 * trust domain trusts, by signing a fresh nonce the CA handed out for that very chain.
 */
export interface X509PopConfig {
  /** PEM of the manufacturer's CA certificates. */
  readonly caCertificates: string;
}

export interface X509PopIdentity {
  /** SHA-1 of the leaf, lowercase hex: the agent ID path, as SPIRE names it. */
  readonly fingerprint: string;
  readonly selectors: string[];
  /** The leaf's SubjectPublicKeyInfo (DER): all that checking the answer to a challenge needs of the chain. */
  readonly publicKey: Buffer;
  /** SHA-1 of the manufacturer CA the chain verified to, and the earliest notAfter on the way. */
  readonly anchor: string;
  readonly validUntil: Date;
}

/** A verified chain: the manufacturer CA it reaches and the certificates that led there. */
export interface VerifiedChain {
  readonly anchor: X509Certificate;
  readonly path: readonly X509Certificate[];
}

const refused = (message: string): CairnError => new CairnError('unauthenticated', message);
const sha1 = (der: Buffer): string => createHash('sha1').update(der).digest('hex');

/** Checks the manufacturer CA configuration an admin supplies. */
export function parseManufacturerCas(pem: string): X509Certificate[] {
  let ders: Buffer[];
  try {
    ders = pemToDerList(pem);
  } catch {
    ders = [];
  }
  if (ders.length === 0) throw new CairnError('invalid_request', 'caCertificates must hold at least one PEM certificate');
  return ders.map((d) => {
    const cert = new X509Certificate(d);
    if (!cert.ca) throw new CairnError('invalid_request', `${cert.subject || 'a certificate'} is not a CA certificate`);
    return cert;
  });
}

function within(cert: X509Certificate, now: Date): boolean {
  return new Date(cert.validFrom) <= now && now <= new Date(cert.validTo);
}

/** Verifies leaf → intermediates → one of the manufacturer CAs; returns the CA that anchors it. */
export function verifyDeviceChain(chain: readonly Buffer[], config: X509PopConfig, now: Date): VerifiedChain {
  if (chain.length === 0 || chain.length > 5) throw new CairnError('invalid_request', 'the chain must hold the device certificate and at most 4 intermediates');
  let certs: X509Certificate[];
  try {
    certs = chain.map((d) => new X509Certificate(d));
  } catch {
    throw new CairnError('invalid_request', 'the chain is not DER certificates');
  }
  if (certs[0]!.ca) throw refused('the device certificate must not be a CA');
  const roots = parseManufacturerCas(config.caCertificates);
  for (let i = 0; i < certs.length; i++) {
    const cert = certs[i]!;
    if (!within(cert, now)) throw refused(`certificate ${i} of the chain is expired or not yet valid`);
    const anchor = roots.find((r) => cert.checkIssued(r) && cert.verify(r.publicKey));
    if (anchor) {
      if (!within(anchor, now)) throw refused('the manufacturer CA is expired');
      return { anchor, path: certs.slice(0, i + 1) };
    }
    const next = certs[i + 1];
    if (!next || !next.ca || !cert.checkIssued(next) || !cert.verify(next.publicKey)) break;
  }
  throw refused('the device certificate does not chain to a manufacturer CA of this trust domain');
}

/** Is the manufacturer CA a challenge was issued under (by SHA-1) still configured and valid? */
export function anchorStillTrusted(config: X509PopConfig, anchor: string, now: Date): boolean {
  return parseManufacturerCas(config.caCertificates).some((ca) => sha1(ca.raw) === anchor && within(ca, now));
}

/** Checks the signature over the nonce with the device certificate's key (its SPKI, DER). */
export function verifyPossession(publicKey: Buffer, nonce: Buffer, signature: Buffer): void {
  let ok = false;
  try {
    ok = verifySignature('sha256', nonce, createPublicKey({ key: publicKey, format: 'der', type: 'spki' }), signature);
  } catch {
    ok = false;
  }
  if (!ok) throw refused('the challenge signature does not verify with the device certificate');
}

function sanSelectors(cert: X509Certificate): string[] {
  const out: string[] = [];
  for (const part of (cert.subjectAltName ?? '').split(/,\s*/)) {
    const m = /^(DNS|URI|IP Address|email):(.+)$/.exec(part);
    if (!m) continue;
    const type = { DNS: 'dns', URI: 'uri', 'IP Address': 'ip', email: 'email' }[m[1] as 'DNS' | 'URI' | 'IP Address' | 'email'];
    out.push(`x509pop:san:${type}:${m[2]}`);
  }
  return out;
}

/** A device with more names than this is refused rather than stored (a selector per name). */
const MAX_SELECTORS = 64;

export function deviceIdentity(chain: readonly Buffer[], verified: VerifiedChain): X509PopIdentity {
  const { anchor } = verified;
  const leaf = new X509Certificate(chain[0]!);
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(leaf.subject)?.[1];
  const selectors = [
    ...(cn ? [`x509pop:subject:cn:${cn}`] : []),
    `x509pop:ca:fingerprint:${sha1(anchor.raw)}`,
    `x509pop:serialnumber:${leaf.serialNumber.toLowerCase()}`,
    ...sanSelectors(leaf),
  ];
  if (selectors.length > MAX_SELECTORS || selectors.some((sel) => sel.length > 1024)) throw new CairnError('invalid_request', 'the device certificate carries too many or too long names');
  const validUntil = new Date(Math.min(...[...verified.path, anchor].map((c) => new Date(c.validTo).getTime())));
  return {
    fingerprint: sha1(chain[0]!),
    selectors: [...new Set(selectors)].sort(),
    publicKey: leaf.publicKey.export({ type: 'spki', format: 'der' }),
    anchor: sha1(anchor.raw),
    validUntil,
  };
}

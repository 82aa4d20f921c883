import { X509Certificate } from 'node:crypto';
import { SpiffeError } from '../errors.js';
import { publicJwkOf, type PublicJwk } from './jwk.js';

export interface JwtAuthority {
  readonly kid: string;
  readonly jwk: PublicJwk;
}

/** A trust domain's bundle. Bundles do not name their trust domain, so we carry it alongside. */
export interface Bundle {
  readonly trustDomain: string;
  /** DER of each X.509 authority (CA certificate). */
  readonly x509Authorities: readonly Buffer[];
  readonly jwtAuthorities: readonly JwtAuthority[];
  readonly sequence?: number;
  readonly refreshHintSeconds?: number;
}

export interface SpiffeBundleJwk extends PublicJwk {
  use: 'x509-svid' | 'jwt-svid';
  kid?: string;
  x5c?: string[];
}

export interface SpiffeBundleDocument {
  keys: SpiffeBundleJwk[];
  spiffe_sequence?: number;
  spiffe_refresh_hint?: number;
}

/** SPIFFE_Trust_Domain_and_Bundle.md §4: x509-svid keys carry one x5c and no kid; jwt-svid keys carry a kid. */
export function encodeSpiffeBundle(bundle: Bundle): SpiffeBundleDocument {
  const keys: SpiffeBundleJwk[] = [
    ...bundle.x509Authorities.map((der): SpiffeBundleJwk => ({
      ...publicJwkOf(new X509Certificate(der).publicKey),
      use: 'x509-svid',
      x5c: [der.toString('base64')],
    })),
    ...bundle.jwtAuthorities.map((a): SpiffeBundleJwk => ({ ...a.jwk, use: 'jwt-svid', kid: a.kid })),
  ];
  const doc: SpiffeBundleDocument = { keys };
  if (bundle.sequence !== undefined) doc.spiffe_sequence = bundle.sequence;
  if (bundle.refreshHintSeconds !== undefined) doc.spiffe_refresh_hint = bundle.refreshHintSeconds;
  return doc;
}

const invalid = (message: string, cause?: unknown): SpiffeError =>
  new SpiffeError('invalid_bundle', message, cause === undefined ? undefined : { cause });

/**
 * Parses a SPIFFE bundle as strictly as go-spiffe: a JWK with an unknown `use` or `kty` is ignored,
 * but an x509-svid key without exactly one x5c or a jwt-svid key without a kid fails the whole parse.
 */
export function parseSpiffeBundle(trustDomain: string, input: string | unknown): Bundle {
  let doc: unknown = input;
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input);
    } catch (err) {
      throw invalid('bundle is not JSON', err);
    }
  }
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw invalid('bundle has no "keys" array');
  }
  const d = doc as { keys: unknown[]; spiffe_sequence?: unknown; spiffe_refresh_hint?: unknown };
  const x509: Buffer[] = [];
  const jwt: JwtAuthority[] = [];
  d.keys.forEach((k, i) => {
    if (typeof k !== 'object' || k === null) throw invalid(`key ${i} is not an object`);
    const key = k as Record<string, unknown>;
    if (!['EC', 'RSA', 'OKP'].includes(key.kty as string)) return;
    if (key.use === 'x509-svid') {
      if (!Array.isArray(key.x5c) || key.x5c.length !== 1 || typeof key.x5c[0] !== 'string') {
        throw invalid(`x509-svid key ${i} must have exactly one x5c certificate`);
      }
      const der = Buffer.from(key.x5c[0], 'base64');
      try {
        new X509Certificate(der);
      } catch (err) {
        throw invalid(`x509-svid key ${i} has an unparseable certificate`, err);
      }
      x509.push(der);
    } else if (key.use === 'jwt-svid') {
      if (typeof key.kid !== 'string' || key.kid === '') throw invalid(`jwt-svid key ${i} is missing its kid`);
      const jwk: PublicJwk = { kty: key.kty as PublicJwk['kty'] };
      for (const m of ['crv', 'x', 'y', 'n', 'e'] as const) if (typeof key[m] === 'string') jwk[m] = key[m] as string;
      jwt.push({ kid: key.kid, jwk });
    }
  });
  const out: { -readonly [K in keyof Bundle]: Bundle[K] } = { trustDomain, x509Authorities: x509, jwtAuthorities: jwt };
  if (typeof d.spiffe_sequence === 'number') out.sequence = d.spiffe_sequence;
  if (typeof d.spiffe_refresh_hint === 'number') out.refreshHintSeconds = d.spiffe_refresh_hint;
  return out;
}

/** Concatenated DER of the X.509 authorities: the Workload API's bundle encoding. */
export function x509BundleDer(bundle: Bundle): Buffer {
  return Buffer.concat(bundle.x509Authorities as Buffer[]);
}

export function derToPem(der: Buffer, label = 'CERTIFICATE'): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

export function pemToDerList(pem: string, label = 'CERTIFICATE'): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  return [...pem.matchAll(re)].map((m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}

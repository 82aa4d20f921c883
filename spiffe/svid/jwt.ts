import { createPublicKey, verify as cryptoVerify, constants, type KeyObject } from 'node:crypto';
import { SpiffeError } from '../errors.js';
import { SpiffeId } from '../id.js';
import type { Bundle, JwtAuthority } from '../bundle/bundle.js';

/** JWT-SVID.md §3: the only algorithms a validator may accept. */
export const JWT_SVID_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

const ALLOWED_HEADERS = new Set(['alg', 'kid', 'typ']);

export interface JwtSvid {
  readonly spiffeId: SpiffeId;
  readonly audience: readonly string[];
  readonly expiresAt: Date;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly header: { readonly alg: JwtSvidAlgorithm; readonly kid: string; readonly typ?: string };
}

export interface ValidateJwtSvidOptions {
  /** The validator's own audience: must be one of the token's `aud` values. */
  readonly audience: string;
  readonly bundleFor: (trustDomain: string) => Bundle | undefined;
  readonly now: Date;
  /** Clock skew tolerance for exp/nbf, as go-jose's default. */
  readonly leewaySeconds?: number;
}

const invalid = (message: string, cause?: unknown): SpiffeError =>
  new SpiffeError('invalid_jwt_svid', message, cause === undefined ? undefined : { cause });

function decodeSegment(segment: string, what: string): Record<string, unknown> {
  if (!/^[A-Za-z0-9_-]*$/.test(segment)) throw invalid(`${what} is not base64url`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch (err) {
    throw invalid(`${what} is not JSON`, err);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function keyFor(authority: JwtAuthority): KeyObject {
  try {
    return createPublicKey({ key: { ...authority.jwk }, format: 'jwk' });
  } catch (err) {
    throw invalid(`bundle key ${authority.kid} is not usable`, err);
  }
}

function verifySignature(alg: JwtSvidAlgorithm, key: KeyObject, signingInput: Buffer, signature: Buffer): boolean {
  const hash = `sha${alg.slice(2)}`;
  const family = alg.slice(0, 2);
  const keyType = key.asymmetricKeyType;
  if (family === 'ES') {
    if (keyType !== 'ec') return false;
    const curve = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' }[alg as 'ES256'];
    if (key.asymmetricKeyDetails?.namedCurve !== curve) return false;
    return cryptoVerify(hash, signingInput, { key, dsaEncoding: 'ieee-p1363' }, signature);
  }
  if (keyType !== 'rsa') return false;
  if (family === 'PS') {
    return cryptoVerify(hash, signingInput, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 }, signature);
  }
  return cryptoVerify(hash, signingInput, key, signature);
}

/** Parses a JWT-SVID without verifying its signature (as go-spiffe's ParseInsecure): header and claim rules only. */
export function parseJwtSvidInsecure(token: string, audience?: string): Omit<JwtSvid, never> & { signingInput: Buffer; signature: Buffer } {
  if (typeof token !== 'string' || token.length === 0) throw invalid('token is empty');
  const parts = token.split('.');
  if (parts.length !== 3) throw invalid('token is not in JWS compact serialization');
  const [h, p, s] = parts as [string, string, string];
  const header = decodeSegment(h, 'header');
  for (const name of Object.keys(header)) {
    if (!ALLOWED_HEADERS.has(name)) throw invalid(`header "${name}" is not allowed in a JWT-SVID`);
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || !(JWT_SVID_ALGORITHMS as readonly string[]).includes(alg)) {
    throw invalid(`algorithm ${JSON.stringify(alg)} is not allowed`);
  }
  if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE') throw invalid('typ must be JWT or JOSE');
  if (typeof header.kid !== 'string' || header.kid === '') throw invalid('token header missing key id');
  const claims = decodeSegment(p, 'payload');
  if (typeof claims.sub !== 'string') throw invalid('token is missing the sub claim');
  let spiffeId: SpiffeId;
  try {
    spiffeId = SpiffeId.parse(claims.sub);
  } catch (err) {
    throw invalid('sub is not a valid SPIFFE ID', err);
  }
  const aud = typeof claims.aud === 'string' ? [claims.aud] : claims.aud;
  if (!Array.isArray(aud) || aud.length === 0 || aud.some((a) => typeof a !== 'string')) {
    throw invalid('token is missing the aud claim');
  }
  if (audience !== undefined && !aud.includes(audience)) throw invalid('token audience does not include the expected audience');
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw invalid('token is missing the exp claim');
  if (!/^[A-Za-z0-9_-]+$/.test(s)) throw invalid('signature is not base64url');
  const hdr: JwtSvid['header'] =
    header.typ === undefined
      ? { alg: alg as JwtSvidAlgorithm, kid: header.kid }
      : { alg: alg as JwtSvidAlgorithm, kid: header.kid, typ: header.typ as string };
  return {
    spiffeId,
    audience: aud as string[],
    expiresAt: new Date(claims.exp * 1000),
    claims,
    header: hdr,
    signingInput: Buffer.from(`${h}.${p}`, 'latin1'),
    signature: Buffer.from(s, 'base64url'),
  };
}

/** JWT-SVID.md §7: validate a token against the JWT authorities of the trust domain in its `sub`. */
export function validateJwtSvid(token: string, options: ValidateJwtSvidOptions): JwtSvid {
  const parsed = parseJwtSvidInsecure(token, options.audience);
  const leeway = (options.leewaySeconds ?? 60) * 1000;
  const now = options.now.getTime();
  if (now > parsed.expiresAt.getTime() + leeway) throw invalid('token has expired');
  const nbf = parsed.claims.nbf;
  if (typeof nbf === 'number' && now + leeway < nbf * 1000) throw invalid('token is not yet valid');
  const bundle = options.bundleFor(parsed.spiffeId.trustDomain);
  if (!bundle) throw invalid(`no bundle for trust domain ${parsed.spiffeId.trustDomain}`);
  const authority = bundle.jwtAuthorities.find((a) => a.kid === parsed.header.kid);
  if (!authority) throw invalid(`no JWT authority with kid ${parsed.header.kid}`);
  if (!verifySignature(parsed.header.alg, keyFor(authority), parsed.signingInput, parsed.signature)) {
    throw invalid('token signature is invalid');
  }
  return { spiffeId: parsed.spiffeId, audience: parsed.audience, expiresAt: parsed.expiresAt, claims: parsed.claims, header: parsed.header };
}

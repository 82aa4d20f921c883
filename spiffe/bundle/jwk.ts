import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';

/** The public members of a JWK we ever publish: no private parts, no extras. */
export interface PublicJwk {
  kty: 'EC' | 'RSA' | 'OKP';
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
}

export function publicJwkOf(key: KeyObject | Buffer): PublicJwk {
  const keyObject = Buffer.isBuffer(key) ? createPublicKey({ key, format: 'der', type: 'spki' }) : key;
  const jwk = keyObject.export({ format: 'jwk' }) as JsonWebKey;
  switch (jwk.kty) {
    case 'EC':
      return { kty: 'EC', crv: jwk.crv!, x: jwk.x!, y: jwk.y! };
    case 'RSA':
      return { kty: 'RSA', n: jwk.n!, e: jwk.e! };
    case 'OKP':
      return { kty: 'OKP', crv: jwk.crv!, x: jwk.x! };
    default:
      throw new TypeError(`unsupported key type ${String(jwk.kty)}`);
  }
}

/** JWS `alg` implied by a public key (JWT-SVID allows RS/ES/PS 256/384/512). */
export function jwsAlgorithmOf(jwk: PublicJwk): 'ES256' | 'ES384' | 'ES512' | 'RS256' {
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-384') return 'ES384';
  if (jwk.kty === 'EC' && jwk.crv === 'P-521') return 'ES512';
  throw new TypeError(`no JWT-SVID algorithm for ${jwk.kty} ${jwk.crv ?? ''}`);
}

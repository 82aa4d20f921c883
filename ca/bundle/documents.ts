import { encodeSpiffeBundle, type Bundle, type SpiffeBundleDocument } from '../../spiffe/bundle/bundle.js';
import { jwsAlgorithmOf, publicJwkOf, type PublicJwk } from '../../spiffe/bundle/jwk.js';
import type { AuthorityKey } from '../authority/store.js';
import { x509AnchorsOf } from '../upstream/published.js';
import type { TrustDomain } from '../trust-domains/model.js';

export function bundleOf(trustDomain: TrustDomain, keys: readonly AuthorityKey[]): Bundle {
  return {
    trustDomain: trustDomain.name,
    x509Authorities: x509AnchorsOf(keys),
    jwtAuthorities: keys.filter((k) => k.kind === 'jwt').map((k) => ({ kid: k.id, jwk: publicJwkOf(k.publicKey) })),
    sequence: trustDomain.bundleSequence,
    refreshHintSeconds: trustDomain.bundleRefreshHintSeconds,
  };
}

export function spiffeBundleDocument(trustDomain: TrustDomain, keys: readonly AuthorityKey[]): SpiffeBundleDocument {
  return encodeSpiffeBundle(bundleOf(trustDomain, keys));
}

export interface OidcJwk extends PublicJwk {
  kid: string;
  alg: string;
  use: 'sig';
}

/** A plain JWKS for OIDC consumers (Envoy jwt_authn, Istio, AWS, GCP): JWT keys only, use "sig". */
export function oidcJwks(keys: readonly AuthorityKey[]): { keys: OidcJwk[] } {
  return {
    keys: keys
      .filter((k) => k.kind === 'jwt')
      .map((k) => {
        const jwk = publicJwkOf(k.publicKey);
        return { ...jwk, kid: k.id, alg: jwsAlgorithmOf(jwk), use: 'sig' as const };
      }),
  };
}

export interface OidcDiscoveryDocument {
  issuer: string;
  jwks_uri: string;
  authorization_endpoint: string;
  response_types_supported: string[];
  subject_types_supported: string[];
  id_token_signing_alg_values_supported: string[];
}

/**
 * The JWKS URL of an issuer: beside its discovery document (`<issuer>/.well-known/openid-configuration`),
 * so always on the issuer's scheme, host and path, wherever the discovery document was fetched. The
 * CA's listeners serve it for issuers of the form `<base>/td/<td>`; an https_web bundle endpoint for
 * its trust domain's issuer (ca/bundle-endpoint/handler.ts).
 */
export const jwksUriOf = (issuer: string): string => `${issuer.replace(/\/+$/, '')}/jwks`;

/** `issuer` is the trust domain's JWT issuer byte for byte, so it equals every token's `iss`. */
export function oidcDiscovery(issuer: string, jwksUri: string, keys: readonly AuthorityKey[]): OidcDiscoveryDocument {
  const algs = [...new Set(oidcJwks(keys).keys.map((k) => k.alg))].sort();
  return {
    issuer,
    jwks_uri: jwksUri,
    authorization_endpoint: '',
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: algs,
  };
}

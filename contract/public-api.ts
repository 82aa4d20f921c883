import { Type } from 'typebox';
import { TrustDomainName } from './common.js';

export const PublicPaths = {
  bundle: '/td/:trustDomain/bundle',
  bundlePem: '/td/:trustDomain/bundle.pem',
  jwks: '/td/:trustDomain/jwks',
  oidcDiscovery: '/td/:trustDomain/.well-known/openid-configuration',
  crl: '/td/:trustDomain/crl',
  crlPem: '/td/:trustDomain/crl.pem',
  healthz: '/healthz',
  readyz: '/readyz',
} as const;

export const publicUrls = (base: string, trustDomain: string) => ({
  bundleUrl: `${base}/td/${trustDomain}/bundle`,
  jwksUrl: `${base}/td/${trustDomain}/jwks`,
  oidcDiscoveryUrl: `${base}/td/${trustDomain}/.well-known/openid-configuration`,
  defaultIssuer: `${base}/td/${trustDomain}`,
});

export const TrustDomainPathParams = Type.Object({ trustDomain: TrustDomainName });

const Jwk = Type.Object({
  kty: Type.String(),
  crv: Type.Optional(Type.String()),
  x: Type.Optional(Type.String()),
  y: Type.Optional(Type.String()),
  n: Type.Optional(Type.String()),
  e: Type.Optional(Type.String()),
});

export const SpiffeBundleSchema = Type.Object({
  keys: Type.Array(
    Type.Intersect([
      Jwk,
      Type.Object({
        use: Type.String(),
        kid: Type.Optional(Type.String()),
        x5c: Type.Optional(Type.Array(Type.String())),
      }),
    ]),
  ),
  spiffe_sequence: Type.Optional(Type.Integer()),
  spiffe_refresh_hint: Type.Optional(Type.Integer()),
});

export const OidcJwksSchema = Type.Object({
  keys: Type.Array(Type.Intersect([Jwk, Type.Object({ kid: Type.String(), alg: Type.String(), use: Type.String() })])),
});

export const OidcDiscoverySchema = Type.Object({
  issuer: Type.String(),
  jwks_uri: Type.String(),
  authorization_endpoint: Type.String(),
  response_types_supported: Type.Array(Type.String()),
  subject_types_supported: Type.Array(Type.String()),
  id_token_signing_alg_values_supported: Type.Array(Type.String()),
});


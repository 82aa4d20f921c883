import type { KeyType } from '../authority/key-types.js';

/** Where every replica serves the trust domain's bundle to federated peers (SPIFFE Federation). */
interface BundleEndpointBase {
  /** host:port every replica listens on. */
  readonly listen: string;
  /** What peers configure: the listen address unless the public address differs. */
  readonly url: string;
}

/** https_spiffe: the endpoint authenticates with an X.509-SVID of the trust domain itself. */
export interface SpiffeBundleEndpoint extends BundleEndpointBase {
  readonly profile: 'https_spiffe';
  /** The SPIFFE ID of the X.509-SVID the endpoint serves with. */
  readonly spiffeId: string;
}

/**
 * https_web: a certificate and key the operator supplies, as files in the CA's web certificate
 * directory (ca/bundle-endpoint/web-files.ts), reloaded when they change. Also serves the trust
 * domain's OIDC discovery document and JWKS over https.
 */
export interface WebBundleEndpoint extends BundleEndpointBase {
  readonly profile: 'https_web';
  /** As the admin named them: relative to the web certificate directory, or an absolute path inside it. */
  readonly certFile: string;
  readonly keyFile: string;
}

export type BundleEndpoint = SpiffeBundleEndpoint | WebBundleEndpoint;

export interface TrustDomain {
  readonly name: string;
  readonly caKeyType: KeyType;
  /** The type of JWT signing keys made from now on (the current key keeps its type until rotation). */
  readonly jwtKeyType: KeyType;
  /** A successor key is in the bundle at least this long before it signs (automatic rotation). */
  readonly authorityPrepublishSeconds: number;
  readonly caTtlSeconds: number;
  readonly x509SvidTtlSeconds: number;
  readonly jwtSvidTtlSeconds: number;
  readonly jwtIssuer: string | null;
  readonly bundleSequence: number;
  readonly bundleRefreshHintSeconds: number;
  readonly bundleEndpoint: BundleEndpoint | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export const TRUST_DOMAIN_DEFAULTS = {
  caKeyType: 'ec-p256' as KeyType,
  /** Long enough to run without rotation tooling; rotation prepares a successor at half life. */
  caTtlSeconds: 365 * 86400,
  x509SvidTtlSeconds: 3600,
  jwtSvidTtlSeconds: 300,
  bundleRefreshHintSeconds: 300,
  /**
   * Envoy caches a JWKS for 10 minutes and istiod refreshes every 20: a key published 30 minutes before
   * it signs has reached them (gateways-k8s-audit.md §G.4).
   */
  authorityPrepublishSeconds: 1800,
} as const;

export const TTL_LIMITS = {
  caTtlSeconds: { min: 3600, max: 20 * 365 * 86400 },
  x509SvidTtlSeconds: { min: 60, max: 90 * 86400 },
  jwtSvidTtlSeconds: { min: 30, max: 86400 },
  /**
   * How often federated peers are asked to poll the bundle (spiffe_refresh_hint): under 5 s would make
   * every peer a load on the endpoint; over a day, a rotation would wait that long to reach them.
   */
  bundleRefreshHintSeconds: { min: 5, max: 86400 },
} as const;

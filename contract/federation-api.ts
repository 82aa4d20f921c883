import { Type, type Static } from 'typebox';
import { Timestamp, TrustDomainName } from './common.js';
import { SpiffeBundleSchema } from './public-api.js';

/**
 * SPIFFE federation (admin API, under the local trust domain): the bundles of foreign trust domains
 * that this trust domain's workloads receive when their entries federate with them.
 */
export const FederationPaths = {
  bundles: '/v1/trust-domains/:trustDomain/federation/bundles',
  bundle: '/v1/trust-domains/:trustDomain/federation/bundles/:foreign',
} as const;

export const FederationParams = Type.Object({ trustDomain: TrustDomainName });
export const ForeignBundleParams = Type.Object({ trustDomain: TrustDomainName, foreign: TrustDomainName });

export const SetForeignBundleBody = Type.Object(
  {
    /** The foreign trust domain's bundle: a SPIFFE bundle (JWKS JSON, as text) or PEM CA certificates. */
    bundle: Type.String({ minLength: 1, maxLength: 262144, description: 'SPIFFE bundle JSON (as a string) or PEM CA certificates' }),
  },
  { additionalProperties: false },
);
export type SetForeignBundleBody = Static<typeof SetForeignBundleBody>;

export const DeleteForeignBundleQuery = Type.Object(
  { force: Type.Optional(Type.Boolean({ description: 'delete even while entries federate with it (they stop receiving it)' })) },
  { additionalProperties: false },
);

export const ForeignBundleView = Type.Object({
  trustDomain: Type.String(),
  foreignTrustDomain: Type.String(),
  /** `static`: set by an admin (cairn bundle set). */
  source: Type.String(),
  /** spiffe_sequence of the document as given; null when it had none (PEM). */
  sequence: Type.Union([Type.Integer(), Type.Null()]),
  refreshHintSeconds: Type.Union([Type.Integer(), Type.Null()]),
  x509Authorities: Type.Integer({ description: 'how many X.509 authorities (CA certificates)' }),
  jwtAuthorities: Type.Integer({ description: 'how many JWT-SVID keys' }),
  /** The bundle as a SPIFFE bundle document. */
  bundle: SpiffeBundleSchema,
  updatedAt: Timestamp,
  updatedBy: Type.String(),
});
export type ForeignBundleView = Static<typeof ForeignBundleView>;

export const ForeignBundleList = Type.Object({ trustDomain: Type.String(), bundles: Type.Array(ForeignBundleView) });
export type ForeignBundleList = Static<typeof ForeignBundleList>;

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
  relationships: '/v1/trust-domains/:trustDomain/federation/relationships',
  relationship: '/v1/trust-domains/:trustDomain/federation/relationships/:foreign',
  relationshipRefresh: '/v1/trust-domains/:trustDomain/federation/relationships/:foreign/refresh',
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

export const FederationProfileSchema = Type.Union([Type.Literal('https_spiffe'), Type.Literal('https_web')]);

export const CreateRelationshipBody = Type.Object(
  {
    foreignTrustDomain: TrustDomainName,
    bundleEndpointUrl: Type.String({ minLength: 1, maxLength: 2048, description: 'https URL of the foreign bundle endpoint (no credentials, no fragment)' }),
    profile: FederationProfileSchema,
    /** https_spiffe: the SPIFFE ID the endpoint's SVID carries (default spiffe://<foreign>/cairn/bundle-endpoint). */
    endpointSpiffeId: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
    /** https_spiffe: the bootstrap bundle (SPIFFE bundle JSON or PEM). */
    bundle: Type.Optional(Type.String({ minLength: 1, maxLength: 262144 })),
    /** https_web: PEM roots for the endpoint's certificate (default: the system's). */
    webRoots: Type.Optional(Type.String({ minLength: 1, maxLength: 262144 })),
  },
  { additionalProperties: false },
);
export type CreateRelationshipBody = Static<typeof CreateRelationshipBody>;

const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);

export const RelationshipView = Type.Object({
  trustDomain: Type.String(),
  foreignTrustDomain: Type.String(),
  bundleEndpointUrl: Type.String(),
  profile: FederationProfileSchema,
  endpointSpiffeId: Type.Union([Type.String(), Type.Null()]),
  /** https_web: whether roots were given (false: the system's). */
  webRoots: Type.Boolean(),
  /** spiffe_sequence of the bundle held now (null: none held, or it has none). */
  sequence: Type.Union([Type.Integer(), Type.Null()]),
  /** The last successful refresh; null: none yet (the bootstrap bundle, if any, is what is held). */
  lastRefreshAt: NullableTimestamp,
  lastAttemptAt: NullableTimestamp,
  /** Why the last attempt failed; null after a success. The last good bundle is kept meanwhile. */
  lastError: Type.Union([Type.String(), Type.Null()]),
  /** Consecutive failed attempts. */
  failures: Type.Integer(),
  nextRefreshAt: Timestamp,
  createdAt: Timestamp,
  createdBy: Type.String(),
});
export type RelationshipView = Static<typeof RelationshipView>;

export const RelationshipList = Type.Object({ trustDomain: Type.String(), relationships: Type.Array(RelationshipView) });
export type RelationshipList = Static<typeof RelationshipList>;

import { Type, type Static } from 'typebox';
import { Timestamp, TrustDomainName } from './common.js';
import { KeyTypeSchema } from './admin-api.js';

/** The operator's levers over a trust domain's signing keys (admin API, under the trust domain). */
export const AuthorityPaths = {
  list: '/v1/trust-domains/:name/authorities',
  prepare: '/v1/trust-domains/:name/authorities/prepare',
  activate: '/v1/trust-domains/:name/authorities/activate',
  taint: '/v1/trust-domains/:name/authorities/:id/taint',
  revoke: '/v1/trust-domains/:name/authorities/:id/revoke',
} as const;

export const AuthorityKindSchema = Type.Union([Type.Literal('x509'), Type.Literal('jwt')], { description: 'x509: a CA certificate and key; jwt: a JWT-SVID signing key' });
export const AuthorityStatusSchema = Type.Union([
  Type.Literal('prepared'),
  Type.Literal('active'),
  Type.Literal('old'),
  Type.Literal('tainted'),
  Type.Literal('revoked'),
]);

const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);

export const AuthorityView = Type.Object({
  kind: AuthorityKindSchema,
  /** X.509: the key id Cairn gave the CA; JWT: the `kid`. */
  id: Type.String(),
  status: AuthorityStatusSchema,
  keyType: KeyTypeSchema,
  notBefore: Timestamp,
  notAfter: Timestamp,
  /** In the bundle since (prepared keys are published before they sign). */
  publishedAt: Timestamp,
  activatedAt: NullableTimestamp,
  deactivatedAt: NullableTimestamp,
  taintedAt: NullableTimestamp,
  revokedAt: NullableTimestamp,
  /** Whether the key is in the trust bundle now (every status but revoked). */
  published: Type.Boolean(),
  publicKeyFingerprint: Type.String({ description: 'sha256: and the lowercase hex SHA-256 of the public key\'s SubjectPublicKeyInfo DER' }),
  unexpiredSvids: Type.Union([Type.Integer(), Type.Null()], { description: 'unexpired X.509-SVIDs in the inventory it signed; null for JWT keys (JWT-SVIDs are not inventoried)' }),
  lastSvidExpiresAt: Type.Union([Timestamp, Type.Null()], {
    description: 'the latest expiry of an unexpired SVID it signed (JWT keys: an upper bound, rounded up to the minute); null when none',
  }),
});
export type AuthorityView = Static<typeof AuthorityView>;

export const AuthorityList = Type.Object({ trustDomain: Type.String(), authorities: Type.Array(AuthorityView) });
export type AuthorityList = Static<typeof AuthorityList>;

export const AuthorityTrustDomainParams = Type.Object({ name: TrustDomainName });
export const AuthorityParams = Type.Object({ name: TrustDomainName, id: Type.String({ minLength: 1, maxLength: 128 }) });
export const AuthorityListQuery = Type.Object({ kind: Type.Optional(AuthorityKindSchema) }, { additionalProperties: false });

export const PrepareAuthorityBody = Type.Object({ kind: AuthorityKindSchema }, { additionalProperties: false });

export const ActivateAuthorityBody = Type.Object(
  {
    kind: AuthorityKindSchema,
    /** The prepared authority to activate; refused when it is not the prepared one. */
    id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    /** Refuse unless the prepared key has been published at least this long. */
    minPublishedSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 366 * 86400 })),
  },
  { additionalProperties: false },
);
export type ActivateAuthorityBody = Static<typeof ActivateAuthorityBody>;

export const ActivateAuthorityResponse = Type.Object({
  activated: AuthorityView,
  /** The authority that was active until now (now old), if any. */
  previous: Type.Union([AuthorityView, Type.Null()]),
  /** How long the activated key had been published, in seconds. */
  publishedSeconds: Type.Integer(),
});
export type ActivateAuthorityResponse = Static<typeof ActivateAuthorityResponse>;

export const TaintAuthorityBody = Type.Object({ kind: AuthorityKindSchema }, { additionalProperties: false });
export const RevokeAuthorityBody = Type.Object(
  {
    kind: AuthorityKindSchema,
    /** Revoke even while unexpired SVIDs it signed are still in use (they stop verifying at once). */
    force: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

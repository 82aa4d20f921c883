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
  import: '/v1/trust-domains/:name/authorities/import',
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
  /** X.509: the key was prepared for an offline upstream and waits for its signed certificate (cairn authority import); not published yet. */
  awaitingCertificate: Type.Optional(Type.Boolean()),
  /** X.509: the CA certificate is an intermediate signed by an upstream authority (the bundle carries the upstream root). */
  upstreamSigned: Type.Optional(Type.Boolean()),
});
export type AuthorityView = Static<typeof AuthorityView>;

export const UpstreamStatus = Type.Object({
  /** disk: the CA holds the upstream key and signs each new CA certificate with it; offline: the certificates are signed elsewhere and imported. */
  mode: Type.Union([Type.Literal('disk'), Type.Literal('offline')]),
  /** The self-signed roots the bundle carries for it. */
  roots: Type.Array(Type.Object({ subject: Type.String(), notAfter: Timestamp, fingerprint: Type.String({ description: 'sha256: and the hex SHA-256 of the certificate DER' }) })),
  /** The earliest expiry along the upstream chain: no CA certificate can outlive it. */
  notAfter: Timestamp,
  /** Offline: when the next CA certificate should be signed (the active CA's half life, or the pre-publication window before its activation point). */
  successorDueAt: Type.Union([Timestamp, Type.Null()]),
  /** Offline: it is past successorDueAt and no signed successor has been imported. */
  successorDue: Type.Boolean(),
});
export type UpstreamStatus = Static<typeof UpstreamStatus>;

export const AuthorityList = Type.Object({ trustDomain: Type.String(), authorities: Type.Array(AuthorityView), upstream: Type.Optional(UpstreamStatus) });
export type AuthorityList = Static<typeof AuthorityList>;

export const AuthorityTrustDomainParams = Type.Object({ name: TrustDomainName });
export const AuthorityParams = Type.Object({ name: TrustDomainName, id: Type.String({ minLength: 1, maxLength: 128 }) });
export const AuthorityListQuery = Type.Object({ kind: Type.Optional(AuthorityKindSchema) }, { additionalProperties: false });

export const PrepareAuthorityBody = Type.Object(
  {
    kind: AuthorityKindSchema,
    /** X.509 only: generate the key and return a PKCS#10 CSR for it instead of a certificate; the signed certificate comes back through import. */
    csr: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const PreparedAuthority = Type.Object({
  ...AuthorityView.properties,
  /** With csr: the PKCS#10 request (PEM) for the upstream to sign: subject, the key, URI SAN spiffe://<td>, CA extensions requested. */
  csr: Type.Optional(Type.String()),
});
export type PreparedAuthority = Static<typeof PreparedAuthority>;

export const ImportAuthorityBody = Type.Object(
  {
    kind: Type.Literal('x509'),
    /** PEM: the upstream-signed CA certificate for the prepared key. */
    certificate: Type.String({ maxLength: 65536 }),
    /** PEM: the certificates above it up to the self-signed root (optional when the upstream chain is already known). */
    chain: Type.Optional(Type.String({ maxLength: 65536 })),
  },
  { additionalProperties: false },
);
export type ImportAuthorityBody = Static<typeof ImportAuthorityBody>;

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

import { Type, type Static } from 'typebox';
import { PageQuery, SpiffeIdString, Timestamp, TrustDomainName } from './common.js';

export const AdminPaths = {
  trustDomains: '/v1/trust-domains',
  trustDomain: '/v1/trust-domains/:name',
  x509Svids: '/v1/x509-svids',
  jwtSvids: '/v1/jwt-svids',
} as const;

export const KeyTypeSchema = Type.Union([Type.Literal('ec-p256'), Type.Literal('ec-p384'), Type.Literal('rsa-2048')]);

export const TrustDomainView = Type.Object({
  name: Type.String(),
  caKeyType: KeyTypeSchema,
  caTtlSeconds: Type.Integer(),
  x509SvidTtlSeconds: Type.Integer(),
  jwtSvidTtlSeconds: Type.Integer(),
  jwtIssuer: Type.Union([Type.String(), Type.Null()]),
  bundleSequence: Type.Integer(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type TrustDomainView = Static<typeof TrustDomainView>;

export const CreateTrustDomainBody = Type.Object(
  {
    name: TrustDomainName,
    caKeyType: Type.Optional(KeyTypeSchema),
    caTtlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    x509SvidTtlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    jwtSvidTtlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    jwtIssuer: Type.Optional(Type.Union([Type.String({ maxLength: 512 }), Type.Null()])),
  },
  { additionalProperties: false },
);
export type CreateTrustDomainBody = Static<typeof CreateTrustDomainBody>;

export const UpdateTrustDomainBody = Type.Object(
  {
    caTtlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    x509SvidTtlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    jwtSvidTtlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    jwtIssuer: Type.Optional(Type.Union([Type.String({ maxLength: 512 }), Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateTrustDomainBody = Static<typeof UpdateTrustDomainBody>;

export const TrustDomainParams = Type.Object({ name: TrustDomainName });
export const ListQuery = Type.Object(PageQuery, { additionalProperties: false });
export const DeleteQuery = Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false });

export const TrustDomainList = Type.Object({
  trustDomains: Type.Array(TrustDomainView),
  nextPageToken: Type.Optional(Type.String()),
});

export const MintX509Body = Type.Object(
  {
    spiffeId: SpiffeIdString,
    csr: Type.String({ minLength: 1, maxLength: 32768, description: 'PKCS#10 CSR, PEM or base64 DER; only its key is used' }),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    dnsNames: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 32 })),
  },
  { additionalProperties: false },
);
export type MintX509Body = Static<typeof MintX509Body>;

export const MintX509Response = Type.Object({
  spiffeId: Type.String(),
  serial: Type.String(),
  expiresAt: Timestamp,
  certChain: Type.String({ description: 'PEM, leaf first' }),
  bundle: Type.String({ description: 'PEM X.509 authorities of the trust domain' }),
});
export type MintX509Response = Static<typeof MintX509Response>;

export const MintJwtBody = Type.Object(
  {
    spiffeId: SpiffeIdString,
    audience: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { minItems: 1, maxItems: 10 }),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);
export type MintJwtBody = Static<typeof MintJwtBody>;

export const MintJwtResponse = Type.Object({
  spiffeId: Type.String(),
  token: Type.String(),
  expiresAt: Timestamp,
});

export const InventoryQuery = Type.Object(
  {
    ...PageQuery,
    trustDomain: Type.Optional(TrustDomainName),
    spiffeIdPrefix: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
    serial: Type.Optional(Type.String({ pattern: '^[0-9a-f]{1,40}$' })),
    expiringBefore: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type InventoryQuery = Static<typeof InventoryQuery>;

export const IssuedSvidView = Type.Object({
  serial: Type.String(),
  trustDomain: Type.String(),
  spiffeId: Type.String(),
  notBefore: Timestamp,
  notAfter: Timestamp,
  issuedTo: Type.String(),
  issuedAt: Timestamp,
});

export const InventoryList = Type.Object({
  svids: Type.Array(IssuedSvidView),
  nextPageToken: Type.Optional(Type.String()),
});

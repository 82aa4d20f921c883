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
  jwtKeyType: KeyTypeSchema,
  caTtlSeconds: Type.Integer(),
  x509SvidTtlSeconds: Type.Integer(),
  jwtSvidTtlSeconds: Type.Integer(),
  jwtIssuer: Type.Union([Type.String(), Type.Null()]),
  authorityPrepublishSeconds: Type.Integer(),
  bundleSequence: Type.Integer(),
  bundleRefreshHintSeconds: Type.Integer({ description: 'the spiffe_refresh_hint of the published bundle: how often federated peers poll it' }),
  bundleEndpointListen: Type.Optional(Type.String({ description: 'HOST:PORT every CA replica serves the SPIFFE bundle endpoint on' })),
  bundleEndpointUrl: Type.Optional(Type.String({ description: 'the bundle endpoint URL federated peers configure' })),
  bundleEndpointProfile: Type.Optional(Type.Union([Type.Literal('https_spiffe'), Type.Literal('https_web')])),
  bundleEndpointSpiffeId: Type.Optional(Type.String({ description: 'the SPIFFE ID of the X.509-SVID the endpoint authenticates with (https_spiffe)' })),
  bundleEndpointCert: Type.Optional(Type.String({ description: 'https_web: the certificate file, in the CA\'s web certificate directory' })),
  bundleEndpointKey: Type.Optional(Type.String({ description: 'https_web: the key file, in the CA\'s web certificate directory' })),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type TrustDomainView = Static<typeof TrustDomainView>;

export const CreateTrustDomainBody = Type.Object(
  {
    name: TrustDomainName,
    caKeyType: Type.Optional(KeyTypeSchema),
    jwtKeyType: Type.Optional(KeyTypeSchema),
    caTtlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    x509SvidTtlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    jwtSvidTtlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    jwtIssuer: Type.Optional(Type.Union([Type.String({ maxLength: 512 }), Type.Null()])),
    authorityPrepublishSeconds: Type.Optional(Type.Integer({ minimum: 0 })),
    bundleRefreshHintSeconds: Type.Optional(Type.Integer({ minimum: 1, description: 'spiffe_refresh_hint of the published bundle, 5 s to 1 day (default 300)' })),
    bundleEndpointListen: Type.Optional(Type.String({ maxLength: 300, description: 'HOST:PORT: every CA replica serves the trust domain\'s SPIFFE bundle endpoint there' })),
    bundleEndpointProfile: Type.Optional(Type.String({ maxLength: 32, description: 'https_spiffe (default): the endpoint authenticates with an X.509-SVID of the trust domain; https_web: with the certificate and key the operator supplies' })),
    bundleEndpointSpiffeId: Type.Optional(Type.String({ maxLength: 2048, description: 'default spiffe://<td>/cairn/bundle-endpoint' })),
    bundleEndpointUrl: Type.Optional(Type.String({ maxLength: 512, description: 'the public https URL, when it differs from the listen address' })),
    upstreamCaCertificate: Type.Optional(Type.String({ maxLength: 65536, description: 'PEM: an upstream CA certificate, then its chain up to the self-signed root; the trust domain\'s CA becomes an intermediate under it' })),
    upstreamCaKey: Type.Optional(Type.String({ maxLength: 65536, description: 'PEM: the upstream CA\'s private key (unencrypted); sealed under the KEK, never returned' })),
    bundleEndpointCert: Type.Optional(Type.String({ maxLength: 1024, description: 'https_web: the certificate (chain) PEM file, relative to the CA\'s --web-cert-dir or inside it' })),
    bundleEndpointKey: Type.Optional(Type.String({ maxLength: 1024, description: 'https_web: the private key PEM file, relative to the CA\'s --web-cert-dir or inside it' })),
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
    jwtKeyType: Type.Optional(KeyTypeSchema),
    authorityPrepublishSeconds: Type.Optional(Type.Integer({ minimum: 0 })),
    bundleRefreshHintSeconds: Type.Optional(Type.Integer({ minimum: 1, description: 'spiffe_refresh_hint of the published bundle, 5 s to 1 day (default 300)' })),
    bundleEndpointListen: Type.Optional(Type.Union([Type.String({ maxLength: 300 }), Type.Null()], { description: 'HOST:PORT; null removes the endpoint' })),
    bundleEndpointProfile: Type.Optional(Type.String({ maxLength: 32, description: 'https_spiffe (default): the endpoint authenticates with an X.509-SVID of the trust domain; https_web: with the certificate and key the operator supplies' })),
    bundleEndpointSpiffeId: Type.Optional(Type.String({ maxLength: 2048, description: 'default spiffe://<td>/cairn/bundle-endpoint' })),
    bundleEndpointUrl: Type.Optional(Type.String({ maxLength: 512, description: 'the public https URL, when it differs from the listen address' })),
    upstreamCaCertificate: Type.Optional(Type.String({ maxLength: 65536, description: 'PEM: a new (renewed) upstream CA certificate and its chain; it signs the next CA certificate' })),
    upstreamCaKey: Type.Optional(Type.String({ maxLength: 65536, description: "PEM: the new upstream CA's private key; sealed under the KEK, never returned" })),
    bundleEndpointCert: Type.Optional(Type.String({ maxLength: 1024, description: 'https_web: the certificate (chain) PEM file, relative to the CA\'s --web-cert-dir or inside it' })),
    bundleEndpointKey: Type.Optional(Type.String({ maxLength: 1024, description: 'https_web: the private key PEM file, relative to the CA\'s --web-cert-dir or inside it' })),
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
    serial: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{1,40}$', description: 'hex, either case (serials are printed lowercase)' })),
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

// ---- one-time tokens, registration entries, attested nodes (issue 3)

export const AdminPaths3 = {
  tokens: '/v1/tokens',
  entries: '/v1/entries',
  entry: '/v1/entries/:id',
  /** A static segment: the router matches it before `:id`, and no entry ID is `batch` (IDs are 24 random alphanumerics with no verb routes under them). */
  entriesBatch: '/v1/entries/batch',
  agents: '/v1/agents',
  agentBan: '/v1/agents/ban',
  agentUnban: '/v1/agents/unban',
  agentEvict: '/v1/agents/evict',
  agentBans: '/v1/agents/bans',
} as const;

const Selector = Type.String({ minLength: 3, maxLength: 1100, description: 'type:value' });
const AllowUnknownSelectorTypes = Type.Boolean({ description: 'accept selector types Cairn does not know (checked only for shape; they never match what its attestors produce); not stored' });

export const CreateTokenBody = Type.Object(
  {
    trustDomain: TrustDomainName,
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    agentId: Type.Optional(SpiffeIdString),
    spiffeId: Type.Optional(SpiffeIdString),
    selectors: Type.Optional(Type.Array(Selector, { maxItems: 32 })),
    allowUnknownSelectorTypes: Type.Optional(AllowUnknownSelectorTypes),
    federatesWith: Type.Optional(Type.Array(TrustDomainName, { maxItems: 32, description: 'workload credentials: foreign trust domains whose bundles the device gets at redemption and every renewal (as an entry\'s federatesWith)' })),
  },
  { additionalProperties: false },
);
export type CreateTokenBody = Static<typeof CreateTokenBody>;

export const CreatedTokenView = Type.Object({
  id: Type.String(),
  kind: Type.Union([Type.Literal('join'), Type.Literal('workload')]),
  token: Type.String({ description: 'shown once; only its hash is stored' }),
  spiffeId: Type.String({ description: 'the agent ID or workload ID the token will obtain' }),
  expiresAt: Timestamp,
  federatesWith: Type.Optional(Type.Array(Type.String())),
});

/** Admin API roles, weakest last: admin (everything), operator (entries, tokens, agents, SVIDs), viewer (read-only). */
export const AdminRoleSchema = Type.Union([Type.Literal('admin'), Type.Literal('operator'), Type.Literal('viewer')]);

const EntryFields = {
  spiffeId: SpiffeIdString,
  parentId: SpiffeIdString,
  selectors: Type.Array(Selector, { minItems: 1, maxItems: 32 }),
  x509SvidTtl: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  jwtSvidTtl: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  dnsNames: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 32 })),
  hint: Type.Optional(Type.Union([Type.String({ maxLength: 1024 }), Type.Null()])),
  admin: Type.Optional(Type.Boolean()),
  adminRole: Type.Optional(Type.Union([AdminRoleSchema, Type.Null()], { description: 'the role this entry\'s SVIDs get on the admin API (mTLS); implies admin; default admin' })),
  federatesWith: Type.Optional(Type.Array(TrustDomainName, { maxItems: 32 })),
  expiresAt: Type.Optional(Type.Union([Timestamp, Type.Null()])),
  allowUnknownSelectorTypes: Type.Optional(AllowUnknownSelectorTypes),
};

export const CreateEntryBody = Type.Object(EntryFields, { additionalProperties: false });
export type CreateEntryBody = Static<typeof CreateEntryBody>;
export const UpdateEntryBody = Type.Partial(Type.Object(EntryFields), { additionalProperties: false, minProperties: 1 });
export type UpdateEntryBody = Static<typeof UpdateEntryBody>;
export const EntryParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }) });

export const EntryView = Type.Object({
  id: Type.String(),
  trustDomain: Type.String(),
  spiffeId: Type.String(),
  parentId: Type.String(),
  selectors: Type.Array(Type.String()),
  x509SvidTtl: Type.Union([Type.Integer(), Type.Null()]),
  jwtSvidTtl: Type.Union([Type.Integer(), Type.Null()]),
  dnsNames: Type.Array(Type.String()),
  hint: Type.Union([Type.String(), Type.Null()]),
  admin: Type.Boolean(),
  adminRole: Type.Union([AdminRoleSchema, Type.Null()], { description: 'the role of this entry\'s SVIDs on the admin API; null unless admin' }),
  federatesWith: Type.Array(Type.String()),
  expiresAt: Type.Union([Timestamp, Type.Null()]),
  revision: Type.Integer(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type EntryView = Static<typeof EntryView>;

/** Items per batch create: one transaction and one answer, so bounded like a page (SPIRE's batch RPCs cap alike). */
export const MAX_ENTRY_BATCH = 1000;
/** Per item up to 32 selectors of 1,100 bytes is ~36 KiB; typical items are under 1 KiB, so 4 KiB each on average. */
export const ENTRY_BATCH_BODY_LIMIT = 4 * 1024 * 1024;

export const BatchCreateEntriesBody = Type.Object(
  {
    entries: Type.Array(Type.Unknown({ description: 'as the body of POST /v1/entries, checked against its schema item by item (a malformed item fails alone)' }), {
      minItems: 1,
      maxItems: MAX_ENTRY_BATCH,
      description: `at most ${MAX_ENTRY_BATCH} items`,
    }),
  },
  { additionalProperties: false },
);
export type BatchCreateEntriesBody = Static<typeof BatchCreateEntriesBody>;
export const BatchItemError = Type.Object({
  code: Type.String({ description: 'stable machine-readable error code, as POST /v1/entries would answer for this item' }),
  message: Type.String({ description: 'a human sentence' }),
  details: Type.Optional(Type.Object({}, { additionalProperties: true })),
});
/** Exactly one of `entry` and `error` (one object shape rather than a union: the answer of 1,000 items serializes without trying each branch). */
export const BatchCreateEntriesResult = Type.Object({
  results: Type.Array(Type.Object({ entry: Type.Optional(EntryView), error: Type.Optional(BatchItemError) }), {
    description: 'one per item, in request order: { entry } created, or { error } saying why that item was not (the others are unaffected)',
  }),
});
export type BatchCreateEntriesResult = Static<typeof BatchCreateEntriesResult>;

export const EntryListQuery = Type.Object(
  {
    ...PageQuery,
    trustDomain: Type.Optional(TrustDomainName),
    parentId: Type.Optional(SpiffeIdString),
    spiffeId: Type.Optional(SpiffeIdString),
    selector: Type.Optional(Type.Union([Selector, Type.Array(Selector, { maxItems: 32 })])),
  },
  { additionalProperties: false },
);
export type EntryListQuery = Static<typeof EntryListQuery>;
export const EntryList = Type.Object({ entries: Type.Array(EntryView), nextPageToken: Type.Optional(Type.String()) });

export const NodeView = Type.Object({
  spiffeId: Type.String(),
  trustDomain: Type.String(),
  kind: Type.String(),
  attestationType: Type.String(),
  selectors: Type.Array(Type.String()),
  serial: Type.String(),
  expiresAt: Timestamp,
  banned: Type.Boolean(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type NodeView = Static<typeof NodeView>;
export const NodeListQuery = Type.Object({ ...PageQuery, trustDomain: Type.Optional(TrustDomainName) }, { additionalProperties: false });
export const NodeList = Type.Object({ agents: Type.Array(NodeView), nextPageToken: Type.Optional(Type.String()) });
export const NodeActionBody = Type.Object({ spiffeId: SpiffeIdString }, { additionalProperties: false });

// ---- the node deny-list (bans outlive node records)

const BanTargetFields = {
  spiffeId: Type.Optional(SpiffeIdString),
  trustDomain: Type.Optional(TrustDomainName),
  fingerprint: Type.Optional(Type.String({ minLength: 40, maxLength: 59, description: 'x509pop: SHA-1 of the device certificate, hex (colons allowed), as in its agent ID; needs trustDomain' })),
  nodeUid: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'k8s_psat: the Kubernetes node UID; needs trustDomain' })),
};
export const BanBody = Type.Object(
  { ...BanTargetFields, reason: Type.Optional(Type.String({ maxLength: 1024 })) },
  { additionalProperties: false, description: 'exactly one of spiffeId, fingerprint, nodeUid; the node need not be attested' },
);
export type BanBody = Static<typeof BanBody>;
export const UnbanBody = Type.Object(BanTargetFields, { additionalProperties: false, description: 'exactly one of spiffeId, fingerprint, nodeUid' });
export const BanView = Type.Object({
  trustDomain: Type.String(),
  spiffeId: Type.Optional(Type.String()),
  fingerprint: Type.Optional(Type.String()),
  nodeUid: Type.Optional(Type.String()),
  reason: Type.Union([Type.String(), Type.Null()]),
  createdBy: Type.String(),
  createdAt: Timestamp,
});
export type BanView = Static<typeof BanView>;
export const BanListQuery = Type.Object({ ...PageQuery, trustDomain: Type.Optional(TrustDomainName) }, { additionalProperties: false });
export const BanList = Type.Object({ bans: Type.Array(BanView), nextPageToken: Type.Optional(Type.String()) });

// ---- named admin credentials (issue 13)

export const AdminPaths13 = {
  admins: '/v1/admins',
  admin: '/v1/admins/:name',
} as const;

export const AdminName = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9._-]*$', description: 'lowercase letters, digits, ".", "_" and "-"' });

export const CreateAdminBody = Type.Object(
  {
    name: AdminName,
    role: AdminRoleSchema,
    trustDomains: Type.Optional(Type.Array(TrustDomainName, { minItems: 1, maxItems: 32, description: 'the scope; absent: every trust domain' })),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 315_360_000, description: 'absent: no expiry' })),
  },
  { additionalProperties: false },
);
export type CreateAdminBody = Static<typeof CreateAdminBody>;

export const AdminView = Type.Object({
  name: Type.String(),
  role: AdminRoleSchema,
  trustDomains: Type.Union([Type.Array(Type.String()), Type.Null()], { description: 'null: every trust domain' }),
  createdAt: Timestamp,
  createdBy: Type.Union([Type.String(), Type.Null()]),
  expiresAt: Type.Union([Timestamp, Type.Null()]),
  lastUsedAt: Type.Union([Timestamp, Type.Null()], { description: 'to within about a minute' }),
});
export type AdminView = Static<typeof AdminView>;

export const CreatedAdminView = Type.Object({
  ...AdminView.properties,
  token: Type.String({ description: 'the secret, shown once; only its hash is stored' }),
});
export type CreatedAdminView = Static<typeof CreatedAdminView>;

export const AdminParams = Type.Object({ name: AdminName });
export const AdminListQuery = Type.Object(PageQuery, { additionalProperties: false });
export const AdminList = Type.Object({ admins: Type.Array(AdminView), nextPageToken: Type.Optional(Type.String()) });

import { Type, type Static } from 'typebox';
import { SpiffeIdString, Timestamp } from './common.js';

/** The verifiable audit log (issue 14): C2SP checkpoints, RFC 6962 proofs, the entries as hashed. */
export const AuditPaths = {
  checkpoint: '/v1/audit/checkpoint',
  entries: '/v1/audit/entries',
  inclusion: '/v1/audit/proof/inclusion',
  consistency: '/v1/audit/proof/consistency',
  key: '/v1/audit/key',
  search: '/v1/audit/search',
} as const;

export const MAX_AUDIT_PAGE = 1000;

const Index = Type.Integer({ minimum: 0, maximum: 2 ** 52 });

export const CheckpointNote = Type.String({ description: 'a C2SP tlog-checkpoint: origin, tree size, base64 root hash, a blank line, the log key\'s Ed25519 signature line' });

export const EntriesQuery = Type.Object({
  start: Type.Integer({ minimum: 0, maximum: 2 ** 52, description: 'first index, inclusive' }),
  end: Type.Integer({ minimum: 1, maximum: 2 ** 52, description: `index after the last, exclusive; at most ${MAX_AUDIT_PAGE} entries per page (fewer when the log is shorter)` }),
}, { additionalProperties: false });

export const AuditEntryView = Type.Object({
  index: Index,
  data: Type.String({ description: 'base64 of the entry bytes exactly as hashed: canonical JSON with time, event, actor and the subject fields' }),
});
export type AuditEntryView = Static<typeof AuditEntryView>;

export const EntriesView = Type.Object({ entries: Type.Array(AuditEntryView) });
export type EntriesView = Static<typeof EntriesView>;

export const InclusionQuery = Type.Object({ index: Index, size: Type.Integer({ minimum: 1, maximum: 2 ** 52 }) }, { additionalProperties: false });
export const ConsistencyQuery = Type.Object({ from: Index, to: Index }, { additionalProperties: false });

export const ProofView = Type.Object({ hashes: Type.Array(Type.String(), { description: 'base64 SHA-256 hashes in RFC 6962 order' }) });
export type ProofView = Static<typeof ProofView>;

export const AuditKeyView = Type.Object({
  vkey: Type.String({ description: 'C2SP signed-note verifier key: <origin>+<key id hex>+<base64(0x01 ‖ Ed25519 key)>' }),
  publicKey: Type.String({ description: 'the raw 32-byte Ed25519 public key, base64' }),
});
export type AuditKeyView = Static<typeof AuditKeyView>;

export const AuditSearchQuery = Type.Object({
  event: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  actor: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
  spiffeId: Type.Optional(SpiffeIdString),
  serial: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{1,64}$' })),
  since: Type.Optional(Timestamp),
  until: Type.Optional(Timestamp),
  after: Type.Optional(Type.Integer({ minimum: -1, maximum: 2 ** 52, description: 'only entries after this index (the previous page\'s next)' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_AUDIT_PAGE })),
}, { additionalProperties: false });
export type AuditSearchQuery = Static<typeof AuditSearchQuery>;

export const AuditSearchView = Type.Object({
  entries: Type.Array(AuditEntryView),
  next: Type.Optional(Type.Integer({ description: 'pass as after= for the next page; absent on the last' })),
});
export type AuditSearchView = Static<typeof AuditSearchView>;

import { CHECKS, command, flags, group, type ValueCheck } from '../flags.js';
import { parseVerifierKey } from '../../lib/signed-note.js';
import { readableFile } from '../settings.js';
import { ADMIN_FLAGS } from './common.js';

const fileToRead = ((v, where) => (readableFile(v, where), v)) satisfies ValueCheck;
const verifierKeyValue = ((v) => {
  try {
    parseVerifierKey(v);
  } catch (err) {
    throw new Error(`must be a C2SP verifier key like <origin>+<key id>+<base64 key>, as GET /v1/audit/key answers: ${(err as Error).message}`);
  }
  return v.trim();
}) satisfies ValueCheck;

export const AUDIT_VERIFY_FLAGS = flags({
  'checkpoint-file': { type: 'string', value: 'FILE', check: fileToRead, complete: 'file', description: 'a checkpoint saved earlier (e.g. by --audit-checkpoint-file): the log must extend it (consistency proof)' },
  'save-checkpoint': { type: 'string', value: 'FILE', complete: 'file', description: 'once verified, write the checkpoint to FILE, for the next run\'s --checkpoint-file' },
  vkey: { type: 'string', value: 'VKEY', check: verifierKeyValue, description: 'the log\'s verifier key as kept elsewhere (GET /v1/audit/key\'s vkey): checkpoints must verify under it, not under the key the CA serves' },
  ...ADMIN_FLAGS,
});

export const AUDIT_SEARCH_FLAGS = flags({
  actor: { type: 'string', value: 'NAME', check: CHECKS.nonEmpty, description: 'who acted: an admin credential\'s name, a node\'s SPIFFE ID, token:<id>' },
  'spiffe-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'the SPIFFE ID the entry is about' },
  serial: { type: 'string', value: 'HEX', check: CHECKS.serial, description: 'an X.509-SVID serial number (hex)' },
  event: { type: 'string', value: 'TYPE', check: CHECKS.nonEmpty, description: 'the event type, e.g. x509_svid.issued, token.refused, admin.action' },
  since: { type: 'string', value: 'TIMESTAMP', check: CHECKS.timestamp, description: 'entries at or after this time (RFC 3339)' },
  until: { type: 'string', value: 'TIMESTAMP', check: CHECKS.timestamp, description: 'entries before this time (RFC 3339)' },
  limit: { type: 'string', value: 'N', check: CHECKS.pageSize, description: 'at most N entries (default 100, at most 500)' },
  ...ADMIN_FLAGS,
});

export const AUDIT_TAIL_FLAGS = flags({
  lines: { type: 'string', value: 'N', check: CHECKS.pageSize, description: 'print the last N entries first (default 10)' },
  follow: { type: 'boolean', short: 'f', default: false, description: 'keep printing entries as they are integrated (about once a second)' },
  ...ADMIN_FLAGS,
});

const audit = () => import('../commands/audit.js');

export const auditGroup = group({
  name: 'audit',
  summary: 'the verifiable audit log: verify, search, tail',
  description: `Every issuance, token, attestation, ban, eviction, KEK rotation and admin change is an entry of an RFC 6962
Merkle log, signed as C2SP checkpoints by the log's Ed25519 key. Needs a credential scoped to every trust
domain (viewer and up).`,
  commands: [
    command({
      name: 'verify',
      summary: 'fetch the checkpoint and every entry, recompute the root, check the signature (and consistency with an earlier checkpoint)',
      description: `Exits 0 when the signed checkpoint's root is the root of the entries served, and, with --checkpoint-file,
when the log extends that earlier checkpoint. Otherwise prints the first bad index (found with
consistency proofs) and exits 1. Without --vkey the log's key is the one the CA serves; whoever holds
the database and that key could re-sign a rewritten log, so keep the vkey elsewhere and pin it.`,
      flags: AUDIT_VERIFY_FLAGS,
      examples: ['cairn audit verify --vkey "$(cat audit.vkey)" --checkpoint-file last.checkpoint --save-checkpoint last.checkpoint'],
      run: async (args) => (await audit()).auditVerify(args),
    }),
    command({
      name: 'search',
      summary: 'entries by actor, SPIFFE ID, serial, event type and time range (all given must match)',
      flags: AUDIT_SEARCH_FLAGS,
      apiFields: { actor: 'actor', spiffeId: 'spiffe-id', serial: 'serial', event: 'event', since: 'since', until: 'until', limit: 'limit' },
      examples: ['cairn audit search --spiffe-id spiffe://example.org/web --event x509_svid.issued', 'cairn audit search --actor ci --since 2030-01-01T00:00:00Z'],
      run: async (args) => (await audit()).auditSearch(args),
    }),
    command({
      name: 'tail',
      summary: 'the latest entries; with --follow, new ones as they are integrated',
      flags: AUDIT_TAIL_FLAGS,
      run: async (args) => (await audit()).auditTail(args),
    }),
  ],
});

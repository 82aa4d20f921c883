import type { JsonValue } from '../../lib/canonical-json.js';
import type { Queryable } from '../db/database.js';

/**
 * What other domains see of the audit log: one call, inside the transaction of the change an event
 * records, so a change whose entry cannot be written does not happen. The entry is canonical JSON
 * of `{ time, event, actor, ...subject }`: `time` is the log's clock at append; `spiffeId` and
 * `serial` in the subject are also indexed for `cairn audit search`. Never put a secret (a token,
 * a key) in a subject.
 */
export interface AuditEvent {
  /** `<object>.<verb>`, e.g. `x509_svid.issued`, `authority.activated`. */
  readonly event: string;
  /** Who did it: an admin credential's name or admin SVID, a node's SPIFFE ID, `token:<id>`, `cairn` for the CA itself. */
  readonly actor: string;
  /** The event's subject fields (trustDomain, spiffeId, serial as lowercase hex, …). */
  readonly subject: { readonly [k: string]: JsonValue | undefined };
}

export interface AuditAppender {
  /** Appends the events in one multi-row INSERT on `q` (the change's transaction). */
  append(q: Queryable, events: readonly AuditEvent[]): Promise<void>;
  /** Appends in a statement of its own: for events that change nothing else in the database (a JWT-SVID minted, a refusal). */
  record(events: readonly AuditEvent[]): Promise<void>;
}

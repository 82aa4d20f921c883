import type { JsonValue } from '../../lib/canonical-json.js';
import type { AdminRecord, AdminRecordSink } from '../admin-auth/record.js';
import type { Queryable } from '../db/database.js';
import type { FailureLimiter } from '../enrollment/failure-limiter.js';
import type { AuditAppender, AuditEvent } from './port.js';

/** Views are JSON-ready; this drops what JSON would (undefined, functions) so the entry is canonical. */
const json = (v: unknown): JsonValue | undefined => (v === undefined ? undefined : (JSON.parse(JSON.stringify(v)) as JsonValue));

/**
 * Admin requests into the audit log: every change (actor, action, target, old → new, outcome),
 * every refusal and every failed authentication, as `admin.action` / `admin.auth_failed` entries,
 * besides the structured log line. A change's entry is written in the request's transaction (`q`),
 * so a change whose entry cannot be written does not happen; a failed authentication's, on its own.
 */
export function auditRecordSink(audit: AuditAppender, db: Queryable, next: AdminRecordSink, authFailures: FailureLimiter): AdminRecordSink {
  return {
    async append(record: AdminRecord, q?: Queryable) {
      await next.append(record, q);
      if (record.action === 'admin.authenticate') {
        // Anyone who reaches the listener can fail to authenticate: past a few per source and minute
        // they stay in the log lines only, so nobody can grow the permanent log without a credential.
        try {
          authFailures.check(record.source);
        } catch {
          return;
        }
        authFailures.fail(record.source);
      }
      await audit.append(q ?? db, [eventOf(record)]);
    },
    // one multi-row insert for a batch's records
    async appendAll(records: readonly AdminRecord[], q?: Queryable) {
      if (records.some((r) => r.action === 'admin.authenticate')) throw new TypeError('appendAll is for the records of a change; a failed authentication goes through append');
      await next.appendAll(records, q);
      await audit.append(q ?? db, records.map(eventOf));
    },
  };
}

function eventOf(record: AdminRecord): AuditEvent {
  const failedAuth = record.action === 'admin.authenticate';
  return {
    event: failedAuth ? 'admin.auth_failed' : 'admin.action',
    // an unauthenticated caller is nobody: what it claimed to be (an expired credential's name, an
    // unverified certificate's SPIFFE ID) is recorded as a claim, never as the actor
    actor: failedAuth ? 'anonymous' : record.actor,
    subject: {
      ...(failedAuth && record.actor !== 'anonymous' ? { claimed: record.actor } : {}),
      credential: record.credential,
      action: record.action,
      target: record.target,
      trustDomain: record.trustDomain,
      old: json(record.old),
      new: json(record.new),
      outcome: record.outcome,
      status: record.status,
      code: record.code,
      source: record.source,
      // the target is a SPIFFE ID for SVIDs, nodes and bans: indexed for search
      spiffeId: record.target?.startsWith('spiffe://') ? record.target : undefined,
    },
  };
}

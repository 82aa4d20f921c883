import type { JsonValue } from '../../lib/canonical-json.js';
import type { AdminRecord, AdminRecordSink } from '../admin-auth/record.js';
import type { Queryable } from '../db/database.js';
import type { AuditAppender } from './port.js';

/** Views are JSON-ready; this drops what JSON would (undefined, functions) so the entry is canonical. */
const json = (v: unknown): JsonValue | undefined => (v === undefined ? undefined : (JSON.parse(JSON.stringify(v)) as JsonValue));

/**
 * Admin requests into the audit log: every change (actor, action, target, old → new, outcome),
 * every refusal and every failed authentication, as `admin.action` / `admin.auth_failed` entries,
 * besides the structured log line. An entry that cannot be written is an error the caller sees in
 * its log (the request has been answered by then; the change's own domain event, where it has one,
 * was written in its transaction).
 */
export function auditRecordSink(audit: AuditAppender, db: Queryable, next: AdminRecordSink): AdminRecordSink {
  return {
    async append(record: AdminRecord) {
      await next.append(record);
      const failedAuth = record.action === 'admin.authenticate';
      await audit.append(db, [{
        event: failedAuth ? 'admin.auth_failed' : 'admin.action',
        actor: record.actor,
        subject: {
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
      }]);
    },
  };
}

import type { Logger } from '../../lib/log.js';
import type { Queryable } from '../db/database.js';

/** Told the values before and after a change, inside the change's transaction when there is one. */
export type ChangeObserver<T> = (before: T, after: T) => void;

/**
 * One admin request as recorded, shaped as an audit entry (actor, action, target, old → new,
 * outcome) so the audit log can append the same records. Never a secret: `old`/`new` are the API's
 * views without secret fields, and a failed authentication names at most the credential that was
 * matched (an expired one) or the SPIFFE ID a certificate claimed, never what was presented.
 */
export interface AdminRecord {
  readonly time: string;
  /** The credential's name, the SPIFFE ID of an admin SVID, or `anonymous`. */
  readonly actor: string;
  /** How the actor authenticated (or tried to). */
  readonly credential: 'token' | 'svid' | 'none';
  /** `<object>.<verb>` from the route table (`entry.update`); `admin.authenticate` for a failed authentication. */
  readonly action: string;
  /** What it acted on: a trust domain, an entry ID, a SPIFFE ID, a credential name. */
  readonly target?: string | undefined;
  readonly trustDomain?: string | undefined;
  readonly old?: unknown;
  readonly new?: unknown;
  readonly outcome: 'success' | 'failure';
  readonly status: number;
  /** The error code of a failure. */
  readonly code?: string | undefined;
  /** The caller's address (the socket's peer). */
  readonly source: string;
}

/**
 * Where records go: a structured log line each, and the audit log (ca/audit/admin-sink.ts). `q` is
 * the request's transaction when the record commits with the change it records.
 */
export interface AdminRecordSink {
  append(record: AdminRecord, q?: Queryable): Promise<void>;
  /** A batch's records (changes and refusals, never failed authentications), written together. */
  appendAll(records: readonly AdminRecord[], q?: Queryable): Promise<void>;
}

/** What a route handler tells the record about the change it made. */
export interface ChangeNote {
  readonly target?: string | undefined;
  readonly trustDomain?: string | undefined;
  readonly old?: unknown;
  readonly new?: unknown;
}

export function logRecordSink(logger: Logger): AdminRecordSink {
  const append = async (record: AdminRecord): Promise<void> => {
    const { time: _time, ...fields } = record;
    if (record.action === 'admin.authenticate') logger.warn({ event: 'admin.auth_failed', ...fields }, 'admin authentication failed');
    else logger.info({ event: 'admin.action', ...fields }, 'admin action');
  };
  return {
    append,
    async appendAll(records) {
      for (const record of records) await append(record);
    },
  };
}

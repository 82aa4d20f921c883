import type { Database, Queryable } from '../db/database.js';
import { toDate } from '../db/database.js';
import { guard } from '../db/errors.js';
import { toPage, type Page } from '../../lib/paging.js';

export type BanKind = 'spiffe_id' | 'x509pop_fingerprint' | 'k8s_psat_node_uid';

export interface Ban {
  readonly trustDomain: string;
  readonly kind: BanKind;
  readonly value: string;
  readonly reason: string | null;
  readonly createdBy: string;
  readonly createdAt: Date;
}

/** How a ban and a node meet: `<kind>:<value>`, e.g. `x509pop_fingerprint:<sha1>`. */
export const banSubject = (kind: BanKind, value: string): string => `${kind}:${value}`;

interface Row {
  trust_domain: string;
  kind: BanKind;
  value: string;
  reason: string | null;
  created_by: string;
  created_at: Date;
}

const COLUMNS = 'trust_domain, kind, value, reason, created_by, created_at';
const fromRow = (r: Row): Ban => ({ trustDomain: r.trust_domain, kind: r.kind, value: r.value, reason: r.reason, createdBy: r.created_by, createdAt: toDate(r.created_at) });

/** The deny-list: independent of node records, so evicting a node does not lift its ban. */
export class BanStore {
  constructor(private readonly db: Database) {}

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return guard(() => this.db.transaction(fn));
  }

  /** Adds a ban, or keeps the one there (a new reason replaces the old). */
  add(ban: Ban, q: Queryable = this.db): Promise<Ban> {
    return guard(async () => {
      const res = await q.query<Row>(
        `INSERT INTO node_bans (trust_domain, kind, value, reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (trust_domain, kind, value) DO UPDATE SET reason = COALESCE(EXCLUDED.reason, node_bans.reason)
         RETURNING ${COLUMNS}`,
        [ban.trustDomain, ban.kind, ban.value, ban.reason, ban.createdBy, ban.createdAt],
      );
      return fromRow(res.rows[0]!);
    });
  }

  remove(trustDomain: string, kind: BanKind, value: string, q: Queryable = this.db): Promise<Ban | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`DELETE FROM node_bans WHERE trust_domain = $1 AND kind = $2 AND value = $3 RETURNING ${COLUMNS}`, [trustDomain, kind, value]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  /** The first ban matching any of the subjects; `q`: the caller's transaction. */
  find(trustDomain: string, subjects: readonly string[], q: Queryable = this.db): Promise<Ban | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM node_bans WHERE trust_domain = $1 AND subject = ANY ($2::text[]) ORDER BY kind LIMIT 1`, [trustDomain, subjects]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  /** `trustDomains`: only those (a scoped admin credential's list). */
  list(trustDomain: string | undefined, limit: number, after: readonly string[] | undefined, trustDomains?: readonly string[]): Promise<Page<Ban>> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `SELECT ${COLUMNS} FROM node_bans WHERE ($1::text IS NULL OR trust_domain = $1) AND ($6::text[] IS NULL OR trust_domain = ANY($6::text[]))
           AND ($2::text IS NULL OR (trust_domain, kind, value) > ($2, $3, $4)) ORDER BY trust_domain, kind, value LIMIT $5`,
        [trustDomain ?? null, after?.[0] ?? null, after?.[1] ?? null, after?.[2] ?? null, limit + 1, trustDomains ?? null],
      );
      return toPage(res.rows.map(fromRow), limit, (b) => [b.trustDomain, b.kind, b.value]);
    });
  }
}

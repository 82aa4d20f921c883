import type { Database, Queryable } from '../db/database.js';
import { toDate } from '../db/database.js';
import { guard } from '../db/errors.js';
import { toPage, type Page } from '../../lib/paging.js';

export interface IssuedSvidRecord {
  readonly serial: string;
  readonly trustDomain: string;
  readonly spiffeId: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly issuedTo: string;
  readonly issuedAt: Date;
}

export interface InventoryFilter {
  readonly trustDomain?: string;
  readonly spiffeIdPrefix?: string;
  readonly serial?: string;
  readonly expiringBefore?: Date;
}

interface Row {
  serial: string;
  trust_domain: string;
  spiffe_id: string;
  not_before: Date;
  not_after: Date;
  issued_to: string;
  issued_at: Date;
}

const fromRow = (r: Row): IssuedSvidRecord => ({
  serial: r.serial,
  trustDomain: r.trust_domain,
  spiffeId: r.spiffe_id,
  notBefore: toDate(r.not_before),
  notAfter: toDate(r.not_after),
  issuedTo: r.issued_to,
  issuedAt: toDate(r.issued_at),
});

const likePrefix = (prefix: string): string => prefix.replace(/[\\%_]/g, (c) => '\\' + c) + '%';

export class InventoryStore {
  constructor(private readonly db: Database) {}

  /** One statement for a whole batch, so a batch is recorded entirely or not at all. */
  record(records: readonly IssuedSvidRecord[], q: Queryable = this.db): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    return guard(async () => {
      await q.query(
        `INSERT INTO issued_x509_svids (serial, trust_domain, spiffe_id, not_before, not_after, issued_to, issued_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::timestamptz[])`,
        [
          records.map((r) => r.serial),
          records.map((r) => r.trustDomain),
          records.map((r) => r.spiffeId),
          records.map((r) => r.notBefore.toISOString()),
          records.map((r) => r.notAfter.toISOString()),
          records.map((r) => r.issuedTo),
          records.map((r) => r.issuedAt.toISOString()),
        ],
      );
    });
  }

  list(filter: InventoryFilter, limit: number, after: [string, string] | undefined): Promise<Page<IssuedSvidRecord>> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `SELECT serial, trust_domain, spiffe_id, not_before, not_after, issued_to, issued_at FROM issued_x509_svids
         WHERE ($1::text IS NULL OR trust_domain = $1)
           AND ($2::text IS NULL OR spiffe_id LIKE $2)
           AND ($3::text IS NULL OR serial = $3)
           AND ($4::timestamptz IS NULL OR not_after < $4)
           AND ($5::text IS NULL OR (spiffe_id, serial) > ($5, $6))
         ORDER BY spiffe_id, serial LIMIT $7`,
        [
          filter.trustDomain ?? null,
          filter.spiffeIdPrefix === undefined ? null : likePrefix(filter.spiffeIdPrefix),
          filter.serial ?? null,
          filter.expiringBefore?.toISOString() ?? null,
          after?.[0] ?? null,
          after?.[1] ?? null,
          limit + 1,
        ],
      );
      return toPage(res.rows.map(fromRow), limit, (r) => [r.spiffeId, r.serial]);
    });
  }
}

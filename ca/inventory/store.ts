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
  /** The registration entry it was issued for (agent batch issuance); null otherwise. */
  readonly entryId?: string | null;
}

export interface InventoryFilter {
  readonly trustDomain?: string;
  /** Only these trust domains (a scoped admin credential's list). */
  readonly trustDomains?: readonly string[] | undefined;
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
  entry_id: string | null;
}

const fromRow = (r: Row): IssuedSvidRecord => ({
  serial: r.serial,
  trustDomain: r.trust_domain,
  spiffeId: r.spiffe_id,
  notBefore: toDate(r.not_before),
  notAfter: toDate(r.not_after),
  issuedTo: r.issued_to,
  issuedAt: toDate(r.issued_at),
  entryId: r.entry_id,
});

const COLUMNS = 'serial, trust_domain, spiffe_id, not_before, not_after, issued_to, issued_at, entry_id';

const likePrefix = (prefix: string): string => prefix.replace(/[\\%_]/g, (c) => '\\' + c) + '%';

export class InventoryStore {
  constructor(private readonly db: Database) {}

  /** One statement for a whole batch, so a batch is recorded entirely or not at all. */
  record(records: readonly IssuedSvidRecord[], q: Queryable = this.db): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    return guard(async () => {
      await q.query(
        `INSERT INTO issued_x509_svids (serial, trust_domain, spiffe_id, not_before, not_after, issued_to, issued_at, entry_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::timestamptz[], $8::text[])`,
        [
          records.map((r) => r.serial),
          records.map((r) => r.trustDomain),
          records.map((r) => r.spiffeId),
          records.map((r) => r.notBefore.toISOString()),
          records.map((r) => r.notAfter.toISOString()),
          records.map((r) => r.issuedTo),
          records.map((r) => r.issuedAt.toISOString()),
          records.map((r) => r.entryId ?? null),
        ],
      );
    });
  }

  list(filter: InventoryFilter, limit: number, after: [string, string] | undefined): Promise<Page<IssuedSvidRecord>> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `SELECT ${COLUMNS} FROM issued_x509_svids
         WHERE ($1::text IS NULL OR trust_domain = $1) AND ($8::text[] IS NULL OR trust_domain = ANY($8::text[]))
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
          filter.trustDomains ?? null,
        ],
      );
      return toPage(res.rows.map(fromRow), limit, (r) => [r.spiffeId, r.serial]);
    });
  }

  get(serial: string): Promise<IssuedSvidRecord | undefined> {
    return guard(async () => {
      const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM issued_x509_svids WHERE serial = $1`, [serial]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }
}

import type { Database, Queryable } from '../db/database.js';
import { toDate, toNumber } from '../db/database.js';
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
  /** The authority that signed it (null for SVIDs issued before this was recorded). */
  readonly authorityId?: string | null;
  /** The registration entry it was issued for (agent batch issuance); null otherwise. */
  readonly entryId?: string | null;
  /** The workload identity template it was issued from (agent issuance by template); null otherwise. */
  readonly templateId?: string | null;
}

/** Unexpired SVIDs an authority signed that are still in use (see InventoryStore.inUse). */
export interface AuthorityUse {
  readonly svids: number;
  /** Of those, the SVIDs attested agents and devices hold now (their current or just-renewed serial). */
  readonly nodeSvids: number;
  /** When the last of them expires. */
  readonly lastExpiry: Date | null;
  /**
   * Unexpired SVIDs of the trust domain whose signer is not recorded (issued before 0009, or by a
   * replica of the previous release during an upgrade): any of them may be this key's.
   */
  readonly unknownSigner: number;
  /** A few of their SPIFFE IDs, for the operator. */
  readonly examples: string[];
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
  template_id: string | null;
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
  templateId: r.template_id,
});

const COLUMNS = 'serial, trust_domain, spiffe_id, not_before, not_after, issued_to, issued_at, entry_id, template_id';

const likePrefix = (prefix: string): string => prefix.replace(/[\\%_]/g, (c) => '\\' + c) + '%';

export class InventoryStore {
  constructor(private readonly db: Database) {}

  /** One statement for a whole batch, so a batch is recorded entirely or not at all. */
  record(records: readonly IssuedSvidRecord[], q: Queryable = this.db): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    return guard(async () => {
      await q.query(
        `INSERT INTO issued_x509_svids (serial, trust_domain, spiffe_id, not_before, not_after, issued_to, issued_at, authority_id, entry_id, template_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[])`,
        [
          records.map((r) => r.serial),
          records.map((r) => r.trustDomain),
          records.map((r) => r.spiffeId),
          records.map((r) => r.notBefore.toISOString()),
          records.map((r) => r.notAfter.toISOString()),
          records.map((r) => r.issuedTo),
          records.map((r) => r.issuedAt.toISOString()),
          records.map((r) => r.authorityId ?? null),
          records.map((r) => r.entryId ?? null),
          records.map((r) => r.templateId ?? null),
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

  /** Per authority: how many SVIDs it signed are unexpired, and when the last of them expires. */
  unexpiredByAuthority(ids: readonly string[], now: Date): Promise<Map<string, { count: number; lastExpiry: Date }>> {
    if (ids.length === 0) return Promise.resolve(new Map());
    return guard(async () => {
      const res = await this.db.query<{ authority_id: string; n: number | string; last: Date }>(
        `SELECT authority_id, count(*) AS n, max(not_after) AS last FROM issued_x509_svids
         WHERE authority_id = ANY($1::text[]) AND not_after > $2 GROUP BY authority_id`,
        [ids, now],
      );
      return new Map(res.rows.map((r) => [r.authority_id, { count: toNumber(r.n), lastExpiry: toDate(r.last) }]));
    });
  }

  /**
   * Unexpired SVIDs signed by `authorityId` that are still in use: all of them except those known to
   * be replaced — an SVID an agent got for an entry, once the same agent got a newer one for that
   * entry; an attested node's own SVID, once the node holds a serial issued after it. Anything else
   * (minted through the admin API, a node evicted since) counts until it expires. Reads
   * attested_nodes too: "in use" is a question about both.
   */
  inUse(authorityId: string, trustDomain: string, now: Date, q: Queryable = this.db): Promise<AuthorityUse> {
    return guard(async () => {
      const unknown = await q.query<{ n: number | string }>(
        `SELECT count(*) AS n FROM issued_x509_svids WHERE trust_domain = $1 AND authority_id IS NULL AND not_after > $2`,
        [trustDomain, now],
      );
      const res = await q.query<{ svids: number | string; node_svids: number | string; last: Date | null; examples: string[] | null }>(
        `SELECT count(*) AS svids,
                count(*) FILTER (WHERE s.serial = n.serial OR s.serial = n.new_serial) AS node_svids,
                max(s.not_after) AS last,
                (array_agg(DISTINCT s.spiffe_id))[1:5] AS examples
         FROM issued_x509_svids s
         LEFT JOIN attested_nodes n ON n.spiffe_id = s.spiffe_id AND s.entry_id IS NULL
         WHERE s.authority_id = $1 AND s.not_after > $2
           AND NOT (s.entry_id IS NOT NULL AND EXISTS (
             SELECT 1 FROM issued_x509_svids r WHERE r.issued_to = s.issued_to AND r.entry_id = s.entry_id AND r.issued_at > s.issued_at))
           AND NOT (n.spiffe_id IS NOT NULL AND s.serial <> n.serial AND s.serial IS DISTINCT FROM n.new_serial AND EXISTS (
             SELECT 1 FROM issued_x509_svids c WHERE c.serial = n.serial AND c.issued_at > s.issued_at))`,
        [authorityId, now],
      );
      const r = res.rows[0]!;
      return { svids: toNumber(r.svids), nodeSvids: toNumber(r.node_svids), unknownSigner: toNumber(unknown.rows[0]!.n), lastExpiry: r.last === null ? null : toDate(r.last), examples: r.examples ?? [] };
    });
  }
}

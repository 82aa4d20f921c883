import type { Database, Queryable } from '../db/database.js';
import { toDate, toNumber } from '../db/database.js';
import { guard } from '../db/errors.js';

/** A foreign trust domain's bundle as one local trust domain holds it. */
export interface StoredForeignBundle {
  readonly trustDomain: string;
  readonly foreignTrustDomain: string;
  /** The SPIFFE bundle (JWKS) JSON document. */
  readonly document: string;
  readonly sequence: number | null;
  readonly refreshHintSeconds: number | null;
  /** SHA-256 (base64url) of the document: what agents compare in sync. */
  readonly digest: string;
  /** How it got here: `static` (an admin's `cairn bundle set`) or `endpoint` (a relationship: bootstrap, then refreshes). */
  readonly source: 'static' | 'endpoint';
  readonly updatedAt: Date;
  readonly updatedBy: string;
}

interface Row {
  trust_domain: string;
  foreign_trust_domain: string;
  document: string;
  sequence: number | string | null;
  refresh_hint_seconds: number | null;
  digest: string;
  source: 'static' | 'endpoint';
  updated_at: Date | string;
  updated_by: string;
}

const COLUMNS = 'trust_domain, foreign_trust_domain, document, sequence, refresh_hint_seconds, digest, source, updated_at, updated_by';

const fromRow = (r: Row): StoredForeignBundle => ({
  trustDomain: r.trust_domain,
  foreignTrustDomain: r.foreign_trust_domain,
  document: r.document,
  sequence: r.sequence === null ? null : toNumber(r.sequence),
  refreshHintSeconds: r.refresh_hint_seconds === null ? null : toNumber(r.refresh_hint_seconds),
  digest: r.digest,
  source: r.source,
  updatedAt: toDate(r.updated_at),
  updatedBy: r.updated_by,
});

/** Foreign bundles per local trust domain (ca/federation/). */
export class FederationStore {
  constructor(private readonly db: Database) {}

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return guard(() => this.db.transaction(fn));
  }

  /** The bundle, locked FOR UPDATE when `q` is a transaction that asks for it. */
  get(trustDomain: string, foreign: string, q: Queryable = this.db, lock = false): Promise<StoredForeignBundle | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(
        `SELECT ${COLUMNS} FROM federated_bundles WHERE trust_domain = $1 AND foreign_trust_domain = $2${lock ? ' FOR UPDATE' : ''}`,
        [trustDomain, foreign],
      );
      return res.rows[0] ? fromRow(res.rows[0]) : undefined;
    });
  }

  /** The bundles of these foreign trust domains held for `trustDomain` (all of them when `foreign` is undefined). */
  list(trustDomain: string, foreign?: readonly string[]): Promise<StoredForeignBundle[]> {
    return guard(async () => {
      if (foreign !== undefined && foreign.length === 0) return [];
      const res = await this.db.query<Row>(
        foreign === undefined
          ? `SELECT ${COLUMNS} FROM federated_bundles WHERE trust_domain = $1 ORDER BY foreign_trust_domain`
          : `SELECT ${COLUMNS} FROM federated_bundles WHERE trust_domain = $1 AND foreign_trust_domain = ANY($2) ORDER BY foreign_trust_domain`,
        foreign === undefined ? [trustDomain] : [trustDomain, [...foreign]],
      );
      return res.rows.map(fromRow);
    });
  }

  put(tx: Queryable, b: StoredForeignBundle): Promise<StoredForeignBundle> {
    return guard(async () => {
      const res = await tx.query<Row>(
        `INSERT INTO federated_bundles (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (trust_domain, foreign_trust_domain) DO UPDATE SET document = EXCLUDED.document, sequence = EXCLUDED.sequence,
           refresh_hint_seconds = EXCLUDED.refresh_hint_seconds, digest = EXCLUDED.digest, source = EXCLUDED.source,
           updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
         RETURNING ${COLUMNS}`,
        [b.trustDomain, b.foreignTrustDomain, b.document, b.sequence, b.refreshHintSeconds, b.digest, b.source, b.updatedAt, b.updatedBy],
      );
      return fromRow(res.rows[0]!);
    });
  }

  delete(tx: Queryable, trustDomain: string, foreign: string): Promise<StoredForeignBundle | undefined> {
    return guard(async () => {
      const res = await tx.query<Row>(`DELETE FROM federated_bundles WHERE trust_domain = $1 AND foreign_trust_domain = $2 RETURNING ${COLUMNS}`, [trustDomain, foreign]);
      return res.rows[0] ? fromRow(res.rows[0]) : undefined;
    });
  }
}

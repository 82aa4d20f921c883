import type { Database, Queryable } from '../db/database.js';
import { toDate, toNumber } from '../db/database.js';
import { guard } from '../db/errors.js';

export type FederationProfile = 'https_spiffe' | 'https_web';

/** A federation relationship: where a foreign trust domain's bundle is fetched from, and how it went. */
export interface Relationship {
  readonly trustDomain: string;
  readonly foreignTrustDomain: string;
  readonly bundleEndpointUrl: string;
  readonly profile: FederationProfile;
  /** https_spiffe: the SPIFFE ID the endpoint's server certificate must carry. */
  readonly endpointSpiffeId: string | null;
  /** https_web: the roots (PEM) that authenticate the endpoint; null: the system's. */
  readonly webRoots: string | null;
  readonly nextRefreshAt: Date;
  /** Failed attempts since the last success. */
  readonly failures: number;
  readonly lastAttemptAt: Date | null;
  readonly lastRefreshAt: Date | null;
  readonly lastError: string | null;
  readonly createdAt: Date;
  readonly createdBy: string;
}

interface Row {
  trust_domain: string;
  foreign_trust_domain: string;
  bundle_endpoint_url: string;
  profile: FederationProfile;
  endpoint_spiffe_id: string | null;
  web_roots: string | null;
  next_refresh_at: Date | string;
  failures: number | string;
  last_attempt_at: Date | string | null;
  last_refresh_at: Date | string | null;
  last_error: string | null;
  created_at: Date | string;
  created_by: string;
}

const COLUMNS = `trust_domain, foreign_trust_domain, bundle_endpoint_url, profile, endpoint_spiffe_id, web_roots, next_refresh_at, failures,
  last_attempt_at, last_refresh_at, last_error, created_at, created_by`;

const fromRow = (r: Row): Relationship => ({
  trustDomain: r.trust_domain,
  foreignTrustDomain: r.foreign_trust_domain,
  bundleEndpointUrl: r.bundle_endpoint_url,
  profile: r.profile,
  endpointSpiffeId: r.endpoint_spiffe_id,
  webRoots: r.web_roots,
  nextRefreshAt: toDate(r.next_refresh_at),
  failures: toNumber(r.failures),
  lastAttemptAt: r.last_attempt_at === null ? null : toDate(r.last_attempt_at),
  lastRefreshAt: r.last_refresh_at === null ? null : toDate(r.last_refresh_at),
  lastError: r.last_error,
  createdAt: toDate(r.created_at),
  createdBy: r.created_by,
});

/** Federation relationships (ca/federation/); their bundles are in FederationStore. */
export class RelationshipStore {
  constructor(private readonly db: Database) {}

  get(trustDomain: string, foreign: string, q: Queryable = this.db): Promise<Relationship | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM federation_relationships WHERE trust_domain = $1 AND foreign_trust_domain = $2`, [trustDomain, foreign]);
      return res.rows[0] ? fromRow(res.rows[0]) : undefined;
    });
  }

  list(trustDomain: string): Promise<Relationship[]> {
    return guard(async () => {
      const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM federation_relationships WHERE trust_domain = $1 ORDER BY foreign_trust_domain`, [trustDomain]);
      return res.rows.map(fromRow);
    });
  }

  insert(tx: Queryable, r: Relationship): Promise<Relationship> {
    return guard(
      async () => {
        const res = await tx.query<Row>(
          `INSERT INTO federation_relationships (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING ${COLUMNS}`,
          [r.trustDomain, r.foreignTrustDomain, r.bundleEndpointUrl, r.profile, r.endpointSpiffeId, r.webRoots, r.nextRefreshAt, r.failures, r.lastAttemptAt, r.lastRefreshAt, r.lastError, r.createdAt, r.createdBy],
        );
        return fromRow(res.rows[0]!);
      },
      { federation_relationships_pkey: 'conflict' },
    );
  }

  delete(tx: Queryable, trustDomain: string, foreign: string): Promise<Relationship | undefined> {
    return guard(async () => {
      const res = await tx.query<Row>(`DELETE FROM federation_relationships WHERE trust_domain = $1 AND foreign_trust_domain = $2 RETURNING ${COLUMNS}`, [trustDomain, foreign]);
      return res.rows[0] ? fromRow(res.rows[0]) : undefined;
    });
  }

  /**
   * Claims up to `limit` relationships due by `now` for this replica: their next_refresh_at moves to
   * `leaseUntil`, so another replica does not fetch them meanwhile (nor this one again, should the
   * attempt never report back).
   */
  claimDue(now: Date, leaseUntil: Date, limit: number): Promise<Relationship[]> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `UPDATE federation_relationships SET next_refresh_at = $2, last_attempt_at = $1
         WHERE (trust_domain, foreign_trust_domain) IN (
           SELECT trust_domain, foreign_trust_domain FROM federation_relationships WHERE next_refresh_at <= $1
           ORDER BY next_refresh_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING ${COLUMNS}`,
        [now, leaseUntil, limit],
      );
      return res.rows.map(fromRow);
    });
  }

  /** Records an attempt's outcome (error null: it succeeded); nothing when the relationship was deleted meanwhile. */
  recordAttempt(trustDomain: string, foreign: string, outcome: { at: Date; error: string | null; nextRefreshAt: Date }, q: Queryable = this.db): Promise<void> {
    return guard(async () => {
      await q.query(
        outcome.error === null
          ? `UPDATE federation_relationships SET last_refresh_at = $3, last_error = NULL, failures = 0, next_refresh_at = $4 WHERE trust_domain = $1 AND foreign_trust_domain = $2`
          : `UPDATE federation_relationships SET last_error = $4, failures = failures + 1, next_refresh_at = $3 WHERE trust_domain = $1 AND foreign_trust_domain = $2`,
        outcome.error === null ? [trustDomain, foreign, outcome.at, outcome.nextRefreshAt] : [trustDomain, foreign, outcome.nextRefreshAt, outcome.error],
      );
    });
  }
}

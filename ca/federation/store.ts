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

interface RelationshipRow {
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

const RELATIONSHIP_COLUMNS = `trust_domain, foreign_trust_domain, bundle_endpoint_url, profile, endpoint_spiffe_id, web_roots, next_refresh_at, failures,
  last_attempt_at, last_refresh_at, last_error, created_at, created_by`;

const relationshipFromRow = (r: RelationshipRow): Relationship => ({
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

  /** The relationship, locked FOR UPDATE when `q` is a transaction that asks for it (it then waits out a concurrent delete). */
  get(trustDomain: string, foreign: string, q: Queryable = this.db, lock = false): Promise<Relationship | undefined> {
    return guard(async () => {
      const res = await q.query<RelationshipRow>(
        `SELECT ${RELATIONSHIP_COLUMNS} FROM federation_relationships WHERE trust_domain = $1 AND foreign_trust_domain = $2${lock ? ' FOR UPDATE' : ''}`,
        [trustDomain, foreign],
      );
      return res.rows[0] ? relationshipFromRow(res.rows[0]) : undefined;
    });
  }

  list(trustDomain: string): Promise<Relationship[]> {
    return guard(async () => {
      const res = await this.db.query<RelationshipRow>(`SELECT ${RELATIONSHIP_COLUMNS} FROM federation_relationships WHERE trust_domain = $1 ORDER BY foreign_trust_domain`, [trustDomain]);
      return res.rows.map(relationshipFromRow);
    });
  }

  insert(tx: Queryable, r: Relationship): Promise<Relationship> {
    return guard(
      async () => {
        const res = await tx.query<RelationshipRow>(
          `INSERT INTO federation_relationships (${RELATIONSHIP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING ${RELATIONSHIP_COLUMNS}`,
          [r.trustDomain, r.foreignTrustDomain, r.bundleEndpointUrl, r.profile, r.endpointSpiffeId, r.webRoots, r.nextRefreshAt, r.failures, r.lastAttemptAt, r.lastRefreshAt, r.lastError, r.createdAt, r.createdBy],
        );
        return relationshipFromRow(res.rows[0]!);
      },
      { federation_relationships_pkey: 'conflict' },
    );
  }

  delete(tx: Queryable, trustDomain: string, foreign: string): Promise<Relationship | undefined> {
    return guard(async () => {
      const res = await tx.query<RelationshipRow>(`DELETE FROM federation_relationships WHERE trust_domain = $1 AND foreign_trust_domain = $2 RETURNING ${RELATIONSHIP_COLUMNS}`, [trustDomain, foreign]);
      return res.rows[0] ? relationshipFromRow(res.rows[0]) : undefined;
    });
  }

  /**
   * Claims up to `limit` relationships due by `now` for this replica: their next_refresh_at moves to
   * `leaseUntil`, so another replica does not fetch them meanwhile (nor this one again, should the
   * attempt never report back).
   */
  claimDue(now: Date, leaseUntil: Date, limit: number): Promise<Relationship[]> {
    return guard(async () => {
      const res = await this.db.query<RelationshipRow>(
        `UPDATE federation_relationships SET next_refresh_at = $2, last_attempt_at = $1
         WHERE (trust_domain, foreign_trust_domain) IN (
           SELECT trust_domain, foreign_trust_domain FROM federation_relationships WHERE next_refresh_at <= $1
           ORDER BY next_refresh_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING ${RELATIONSHIP_COLUMNS}`,
        [now, leaseUntil, limit],
      );
      return res.rows.map(relationshipFromRow);
    });
  }

  /**
   * Claims one relationship now, due or not (an operator's `federation refresh`): its next attempt
   * moves to `leaseUntil` as claimDue does. Undefined: no such relationship.
   */
  claim(trustDomain: string, foreign: string, now: Date, leaseUntil: Date): Promise<Relationship | undefined> {
    return guard(async () => {
      const res = await this.db.query<RelationshipRow>(
        `UPDATE federation_relationships SET next_refresh_at = $4, last_attempt_at = $3 WHERE trust_domain = $1 AND foreign_trust_domain = $2 RETURNING ${RELATIONSHIP_COLUMNS}`,
        [trustDomain, foreign, now, leaseUntil],
      );
      return res.rows[0] ? relationshipFromRow(res.rows[0]) : undefined;
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

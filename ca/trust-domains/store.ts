import type { Database, Queryable } from '../db/database.js';
import { toDate, toNumber } from '../db/database.js';
import { guard } from '../db/errors.js';
import { notifyChange, notifyTrustDomain } from '../db/changes.js';
import { toPage, type Page } from '../../lib/paging.js';
import type { KeyType } from '../authority/key-types.js';
import { TRUST_DOMAIN_DEFAULTS, type BundleEndpoint, type TrustDomain } from './model.js';

interface Row {
  name: string;
  ca_key_type: string;
  ca_ttl_seconds: number;
  x509_svid_ttl_seconds: number;
  jwt_svid_ttl_seconds: number;
  jwt_issuer: string | null;
  bundle_sequence: number | string;
  bundle_refresh_hint_seconds: number;
  jwt_key_type: string | null;
  authority_prepublish_seconds: number | null;
  bundle_endpoint_listen: string | null;
  bundle_endpoint_profile: string | null;
  bundle_endpoint_spiffe_id: string | null;
  bundle_endpoint_url: string | null;
  bundle_endpoint_cert_file: string | null;
  bundle_endpoint_key_file: string | null;
  created_at: Date | string;
  updated_at: Date | string;
}

const COLUMNS = `name, ca_key_type, ca_ttl_seconds, x509_svid_ttl_seconds, jwt_svid_ttl_seconds, jwt_issuer,
  bundle_sequence, bundle_refresh_hint_seconds, created_at, updated_at, jwt_key_type, authority_prepublish_seconds,
  bundle_endpoint_listen, bundle_endpoint_profile, bundle_endpoint_spiffe_id, bundle_endpoint_url,
  bundle_endpoint_cert_file, bundle_endpoint_key_file`;

function fromRow(r: Row): TrustDomain {
  return {
    name: r.name,
    caKeyType: r.ca_key_type as KeyType,
    // NULL: a trust domain from before the setting (or made by a replica of that release): JWT keys
    // of the CA's type, as they always were, and the default window.
    jwtKeyType: (r.jwt_key_type ?? r.ca_key_type) as KeyType,
    authorityPrepublishSeconds: r.authority_prepublish_seconds === null ? TRUST_DOMAIN_DEFAULTS.authorityPrepublishSeconds : toNumber(r.authority_prepublish_seconds),
    caTtlSeconds: toNumber(r.ca_ttl_seconds),
    x509SvidTtlSeconds: toNumber(r.x509_svid_ttl_seconds),
    jwtSvidTtlSeconds: toNumber(r.jwt_svid_ttl_seconds),
    jwtIssuer: r.jwt_issuer,
    bundleSequence: toNumber(r.bundle_sequence),
    bundleRefreshHintSeconds: toNumber(r.bundle_refresh_hint_seconds),
    bundleEndpoint: endpointOf(r),
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
  };
}

export interface TrustDomainPatch {
  readonly caTtlSeconds?: number;
  readonly x509SvidTtlSeconds?: number;
  readonly jwtSvidTtlSeconds?: number;
  readonly jwtIssuer?: string | null;
  readonly jwtKeyType?: KeyType;
  readonly authorityPrepublishSeconds?: number;
  readonly bundleRefreshHintSeconds?: number;
  /** null removes it. */
  readonly bundleEndpoint?: BundleEndpoint | null;
}

export class TrustDomainStore {
  constructor(private readonly db: Database) {}

  insert(tx: Queryable, td: TrustDomain): Promise<void> {
    return guard(
      async () => {
        await tx.query(
          `INSERT INTO trust_domains (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
          [td.name, td.caKeyType, td.caTtlSeconds, td.x509SvidTtlSeconds, td.jwtSvidTtlSeconds, td.jwtIssuer,
            td.bundleSequence, td.bundleRefreshHintSeconds, td.createdAt, td.updatedAt, td.jwtKeyType, td.authorityPrepublishSeconds,
            ...endpointColumns(td.bundleEndpoint)],
        );
        if (td.bundleEndpoint) await notifyTrustDomain(tx, td.name);
      },
      { trust_domains_pkey: 'trust_domain_exists' },
    );
  }

  get(name: string, q: Queryable = this.db): Promise<TrustDomain | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM trust_domains WHERE name = $1`, [name]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  list(limit: number, after: string | undefined, names?: readonly string[]): Promise<Page<TrustDomain>> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `SELECT ${COLUMNS} FROM trust_domains WHERE ($1::text IS NULL OR name > $1) AND ($3::text[] IS NULL OR name = ANY($3::text[])) ORDER BY name LIMIT $2`,
        [after ?? null, limit + 1, names ?? null],
      );
      return toPage(res.rows.map(fromRow), limit, (td) => [td.name]);
    });
  }

  update(name: string, patch: TrustDomainPatch, now: Date): Promise<TrustDomain | undefined> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `UPDATE trust_domains SET
           ca_ttl_seconds = COALESCE($2, ca_ttl_seconds),
           x509_svid_ttl_seconds = COALESCE($3, x509_svid_ttl_seconds),
           jwt_svid_ttl_seconds = COALESCE($4, jwt_svid_ttl_seconds),
           jwt_issuer = CASE WHEN $5::boolean THEN $6 ELSE jwt_issuer END,
           updated_at = $7,
           jwt_key_type = COALESCE($8, jwt_key_type),
           authority_prepublish_seconds = COALESCE($9, authority_prepublish_seconds),
           bundle_endpoint_listen = CASE WHEN $10::boolean THEN $11 ELSE bundle_endpoint_listen END,
           bundle_endpoint_profile = CASE WHEN $10::boolean THEN $12 ELSE bundle_endpoint_profile END,
           bundle_endpoint_spiffe_id = CASE WHEN $10::boolean THEN $13 ELSE bundle_endpoint_spiffe_id END,
           bundle_endpoint_url = CASE WHEN $10::boolean THEN $14 ELSE bundle_endpoint_url END,
           bundle_endpoint_cert_file = CASE WHEN $10::boolean THEN $15 ELSE bundle_endpoint_cert_file END,
           bundle_endpoint_key_file = CASE WHEN $10::boolean THEN $16 ELSE bundle_endpoint_key_file END,
           bundle_refresh_hint_seconds = COALESCE($17, bundle_refresh_hint_seconds)
         WHERE name = $1 RETURNING ${COLUMNS}`,
        [name, patch.caTtlSeconds ?? null, patch.x509SvidTtlSeconds ?? null, patch.jwtSvidTtlSeconds ?? null,
          patch.jwtIssuer !== undefined, patch.jwtIssuer ?? null, now, patch.jwtKeyType ?? null, patch.authorityPrepublishSeconds ?? null,
          patch.bundleEndpoint !== undefined, ...endpointColumns(patch.bundleEndpoint ?? null), patch.bundleRefreshHintSeconds ?? null],
      );
      // every replica starts, moves or stops its listener for it (ca/bundle-endpoint)
      if (res.rows[0] && patch.bundleEndpoint !== undefined) await notifyTrustDomain(this.db, name);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  /** The trust domains that have a bundle endpoint, for the replicas' listeners. */
  withBundleEndpoints(): Promise<TrustDomain[]> {
    return guard(async () => (await this.db.query<Row>(`SELECT ${COLUMNS} FROM trust_domains WHERE bundle_endpoint_listen IS NOT NULL ORDER BY name`)).rows.map(fromRow));
  }

  /** Deletes the trust domain (its keys cascade). Returns false when it did not exist. */
  delete(tx: Queryable, name: string): Promise<boolean> {
    return guard(async () => (await tx.query(`DELETE FROM trust_domains WHERE name = $1`, [name])).rowCount > 0);
  }

  /** Locks the row for the rest of the transaction (delete vs. concurrent entry creation). */
  lock(tx: Queryable, name: string): Promise<TrustDomain | undefined> {
    return guard(async () => {
      const res = await tx.query<Row>(`SELECT ${COLUMNS} FROM trust_domains WHERE name = $1 FOR UPDATE`, [name]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  bumpBundleSequence(tx: Queryable, name: string, now: Date): Promise<void> {
    return guard(async () => {
      await tx.query(`UPDATE trust_domains SET bundle_sequence = bundle_sequence + 1, updated_at = $2 WHERE name = $1`, [name, now]);
      await notifyChange(tx, { kind: 'bundle', trustDomain: name });
    });
  }
}

/** listen, profile, SPIFFE ID, URL, certificate file, key file. */
const endpointColumns = (e: BundleEndpoint | null): (string | null)[] =>
  !e ? [null, null, null, null, null, null]
    : e.profile === 'https_web' ? [e.listen, e.profile, null, e.url, e.certFile, e.keyFile]
      : [e.listen, e.profile, e.spiffeId, e.url, null, null];

function endpointOf(r: Row): BundleEndpoint | null {
  if (r.bundle_endpoint_listen === null) return null;
  const common = { listen: r.bundle_endpoint_listen, url: r.bundle_endpoint_url! };
  // a row without a profile predates the column's use: https_spiffe, the only profile then
  return r.bundle_endpoint_profile === 'https_web'
    ? { ...common, profile: 'https_web', certFile: r.bundle_endpoint_cert_file ?? '', keyFile: r.bundle_endpoint_key_file ?? '' }
    : { ...common, profile: 'https_spiffe', spiffeId: r.bundle_endpoint_spiffe_id! };
}

import type { Database, Queryable } from '../db/database.js';
import { toBuffer, toDate, toNumber } from '../db/database.js';
import { guard } from '../db/errors.js';
import type { KeyType } from './key-types.js';

export type AuthorityKind = 'x509' | 'jwt';
/**
 * SPIRE's journal states. prepared: published, never signed; active: signs; old: signed before,
 * still published until it expires; tainted: old and no longer trusted by agents (their SVIDs are
 * re-issued); revoked: gone from the bundle for good (kept in revoked_authority_keys).
 */
export type AuthorityStatus = 'prepared' | 'active' | 'old' | 'tainted' | 'revoked';
export const AUTHORITY_KINDS: readonly AuthorityKind[] = ['x509', 'jwt'];

export interface AuthorityKey {
  /** For JWT keys this is the `kid`. */
  readonly id: string;
  readonly trustDomain: string;
  readonly kind: AuthorityKind;
  readonly keyType: KeyType;
  readonly status: Exclude<AuthorityStatus, 'revoked'>;
  /** SPKI DER. */
  readonly publicKey: Buffer;
  /** CA certificate DER (x509 keys only). */
  readonly certificate: Buffer | null;
  readonly privateKeySealed: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** When it was generated and published (it is in the bundle from the commit that stores it). */
  readonly createdAt: Date;
  readonly activatedAt?: Date | null;
  readonly deactivatedAt?: Date | null;
  readonly taintedAt?: Date | null;
  /** JWT keys: no JWT-SVID it signed expires after this. */
  readonly signedUntil?: Date | null;
  /**
   * X.509 keys under an upstream authority: the certificates above `certificate`, DER concatenated,
   * from its issuer up to the self-signed root(s). Null or absent for a self-signed CA.
   */
  readonly upstreamChain?: Buffer | null;
}

/** What is kept of a revoked key: its public parts and history, never its private key. */
export interface RevokedAuthorityKey extends Omit<AuthorityKey, 'status' | 'privateKeySealed'> {
  readonly status: 'revoked';
  readonly revokedAt: Date;
  readonly revokedBy: string;
  readonly forced: boolean;
}

interface Row {
  id: string;
  trust_domain: string;
  kind: string;
  key_type: string;
  status: string;
  public_key: Uint8Array;
  certificate: Uint8Array | null;
  private_key_sealed: Uint8Array;
  not_before: Date;
  not_after: Date;
  created_at: Date;
  activated_at: Date | null;
  deactivated_at: Date | null;
  tainted_at: Date | null;
  signed_until: Date | null;
  upstream_chain: Uint8Array | null;
}

interface RevokedRow extends Omit<Row, 'status' | 'private_key_sealed' | 'upstream_chain'> {
  revoked_at: Date;
  revoked_by: string;
  forced: boolean;
}

const COLUMNS = `id, trust_domain, kind, key_type, status, public_key, certificate, private_key_sealed, not_before, not_after, created_at,
  activated_at, deactivated_at, tainted_at, signed_until, upstream_chain`;
const PREFIXED_COLUMNS = COLUMNS.split(',').map((c) => `k.${c.trim()}`).join(', ');
const REVOKED_COLUMNS = `id, trust_domain, kind, key_type, public_key, certificate, not_before, not_after, created_at,
  activated_at, deactivated_at, tainted_at, signed_until, revoked_at, revoked_by, forced`;

const optionalDate = (d: Date | null | undefined): Date | null => (d === null || d === undefined ? null : toDate(d));

function fromRow(r: Row): AuthorityKey {
  return {
    id: r.id,
    trustDomain: r.trust_domain,
    kind: r.kind as AuthorityKind,
    keyType: r.key_type as KeyType,
    // A replica of the previous release still calls an old key 'retired'.
    status: (r.status === 'retired' ? 'old' : r.status) as AuthorityKey['status'],
    publicKey: toBuffer(r.public_key),
    certificate: r.certificate === null ? null : toBuffer(r.certificate),
    privateKeySealed: toBuffer(r.private_key_sealed),
    notBefore: toDate(r.not_before),
    notAfter: toDate(r.not_after),
    createdAt: toDate(r.created_at),
    activatedAt: optionalDate(r.activated_at),
    deactivatedAt: optionalDate(r.deactivated_at),
    taintedAt: optionalDate(r.tainted_at),
    signedUntil: optionalDate(r.signed_until),
    upstreamChain: r.upstream_chain === null ? null : toBuffer(r.upstream_chain),
  };
}

function fromRevokedRow(r: RevokedRow): RevokedAuthorityKey {
  return {
    id: r.id,
    trustDomain: r.trust_domain,
    kind: r.kind as AuthorityKind,
    keyType: r.key_type as KeyType,
    status: 'revoked',
    publicKey: toBuffer(r.public_key),
    certificate: r.certificate === null ? null : toBuffer(r.certificate),
    notBefore: toDate(r.not_before),
    notAfter: toDate(r.not_after),
    createdAt: toDate(r.created_at),
    activatedAt: optionalDate(r.activated_at),
    deactivatedAt: optionalDate(r.deactivated_at),
    taintedAt: optionalDate(r.tainted_at),
    signedUntil: optionalDate(r.signed_until),
    revokedAt: toDate(r.revoked_at),
    revokedBy: r.revoked_by,
    forced: r.forced,
  };
}

export class AuthorityKeyStore {
  constructor(private readonly db: Database) {}

  insert(tx: Queryable, keys: readonly AuthorityKey[]): Promise<void> {
    return guard(async () => {
      for (const k of keys) {
        await tx.query(
          `INSERT INTO authority_keys (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
          [k.id, k.trustDomain, k.kind, k.keyType, k.status, k.publicKey, k.certificate, k.privateKeySealed,
            k.notBefore, k.notAfter, k.createdAt, k.activatedAt ?? null, k.deactivatedAt ?? null, k.taintedAt ?? null, k.signedUntil ?? null, k.upstreamChain ?? null],
        );
      }
    });
  }

  /**
   * Every key of the trust domain that is not revoked, expired or not (the bundle is these minus the
   * expired ones, which AuthorityService prunes with a sequence bump before it publishes anything).
   */
  all(trustDomain: string, q: Queryable = this.db): Promise<AuthorityKey[]> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM authority_keys WHERE trust_domain = $1 ORDER BY kind, not_before, id`, [trustDomain]);
      return res.rows.map(fromRow);
    });
  }

  /** Keys not yet expired (prepared, active, old, tainted; revoked keys are not in this table). */
  published(trustDomain: string, now: Date, q: Queryable = this.db): Promise<AuthorityKey[]> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM authority_keys WHERE trust_domain = $1 AND not_after > $2 ORDER BY kind, not_before, id`, [trustDomain, now]);
      return res.rows.map(fromRow);
    });
  }

  /**
   * The keys and the bundle sequence in one statement, so in one snapshot: a reader never pairs a
   * changed key set with the sequence from before the change (or the reverse). Undefined when the
   * trust domain does not exist.
   */
  snapshot(trustDomain: string, q: Queryable = this.db): Promise<{ sequence: number; keys: AuthorityKey[] } | undefined> {
    return guard(async () => {
      const res = await q.query<Row & { bundle_sequence: number | string }>(
        `SELECT td.bundle_sequence, ${PREFIXED_COLUMNS} FROM trust_domains td LEFT JOIN authority_keys k ON k.trust_domain = td.name
         WHERE td.name = $1 ORDER BY k.kind, k.not_before, k.id`,
        [trustDomain],
      );
      if (res.rows.length === 0) return undefined;
      return { sequence: toNumber(res.rows[0]!.bundle_sequence), keys: res.rows.filter((r) => r.id !== null).map(fromRow) };
    });
  }

  active(trustDomain: string, q: Queryable = this.db): Promise<AuthorityKey[]> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM authority_keys WHERE trust_domain = $1 AND status = 'active'`, [trustDomain]);
      return res.rows.map(fromRow);
    });
  }

  /** The active authority of every trust domain and kind: what the metrics report on each scrape. */
  activeEverywhere(): Promise<{ trustDomain: string; kind: AuthorityKind; notAfter: Date; activatedAt: Date | undefined }[]> {
    return guard(async () => {
      const res = await this.db.query<{ trust_domain: string; kind: AuthorityKind; not_after: Date; activated_at: Date | null }>(
        // a key active since before activation times were recorded (0009) has none: its creation is the closest bound
        `SELECT trust_domain, kind, not_after, COALESCE(activated_at, created_at) AS activated_at FROM authority_keys WHERE status = 'active' ORDER BY trust_domain, kind`,
      );
      return res.rows.map((r) => ({ trustDomain: r.trust_domain, kind: r.kind, notAfter: toDate(r.not_after), activatedAt: r.activated_at ? toDate(r.activated_at) : undefined }));
    });
  }

  revoked(trustDomain: string, q: Queryable = this.db): Promise<RevokedAuthorityKey[]> {
    return guard(async () => {
      const res = await q.query<RevokedRow>(`SELECT ${REVOKED_COLUMNS} FROM revoked_authority_keys WHERE trust_domain = $1 ORDER BY kind, not_before, id`, [trustDomain]);
      return res.rows.map(fromRevokedRow);
    });
  }

  /**
   * An imported CA certificate for a prepared key that was waiting for one (the offline upstream
   * flow): from then on it is published (created_at: the pre-publication window counts from now)
   * and may be activated. Its validity is the certificate's.
   */
  setCertificate(tx: Queryable, id: string, certificate: Buffer, upstreamChain: Buffer, notBefore: Date, notAfter: Date, publishedAt: Date): Promise<void> {
    return guard(async () => {
      await tx.query(
        `UPDATE authority_keys SET certificate = $2, upstream_chain = $3, not_before = $4, not_after = $5, created_at = $6 WHERE id = $1 AND status = 'prepared' AND certificate IS NULL`,
        [id, certificate, upstreamChain, notBefore, notAfter, publishedAt],
      );
    });
  }

  /** prepared → active, stamping when it began signing. */
  activate(tx: Queryable, id: string, now: Date): Promise<void> {
    return guard(async () => {
      await tx.query(`UPDATE authority_keys SET status = 'active', activated_at = $2 WHERE id = $1`, [id, now]);
    });
  }

  /** active → old, stamping when it stopped signing. */
  deactivate(tx: Queryable, id: string, now: Date): Promise<void> {
    return guard(async () => {
      await tx.query(`UPDATE authority_keys SET status = 'old', deactivated_at = $2 WHERE id = $1`, [id, now]);
    });
  }

  taint(tx: Queryable, id: string, now: Date): Promise<void> {
    return guard(async () => {
      await tx.query(`UPDATE authority_keys SET status = 'tainted', tainted_at = $2 WHERE id = $1`, [id, now]);
    });
  }

  /** Moves the key out of authority_keys (its private key is dropped) into revoked_authority_keys. */
  revoke(tx: Queryable, key: AuthorityKey, now: Date, actor: string, forced: boolean): Promise<void> {
    return guard(async () => {
      await tx.query(
        `INSERT INTO revoked_authority_keys (${REVOKED_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
        [key.id, key.trustDomain, key.kind, key.keyType, key.publicKey, key.certificate, key.notBefore, key.notAfter, key.createdAt,
          key.activatedAt ?? null, key.deactivatedAt ?? null, key.taintedAt ?? null, key.signedUntil ?? null, now, actor, forced],
      );
      await tx.query(`DELETE FROM authority_keys WHERE id = $1`, [key.id]);
    });
  }

  /**
   * Raises a JWT key's signed_until (never lowers it: replicas race). Returns nothing; the caller
   * remembers what it wrote so it writes about once a minute, not per token.
   */
  extendSignedUntil(id: string, until: Date): Promise<void> {
    return guard(async () => {
      await this.db.query(`UPDATE authority_keys SET signed_until = GREATEST(COALESCE(signed_until, $2), $2) WHERE id = $1`, [id, until]);
    });
  }

  /** Deletes expired keys; returns how many published ones went (each changed the bundle). */
  deleteExpired(tx: Queryable, trustDomain: string, before: Date): Promise<number> {
    return guard(async () => {
      const res = await tx.query(`DELETE FROM authority_keys WHERE trust_domain = $1 AND not_after <= $2`, [trustDomain, before]);
      // Revoked keys were out of the bundle already; past their expiry nothing needs them listed.
      await tx.query(`DELETE FROM revoked_authority_keys WHERE trust_domain = $1 AND not_after <= $2`, [trustDomain, before]);
      return res.rowCount;
    });
  }
}

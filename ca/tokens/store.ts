import type { Database, Queryable } from '../db/database.js';
import { toBuffer, toDate } from '../db/database.js';
import { guard } from '../db/errors.js';

export type TokenKind = 'join' | 'workload';

export interface TokenRecord {
  readonly id: string;
  readonly trustDomain: string;
  readonly kind: TokenKind;
  readonly secretHash: Buffer;
  readonly spiffeId: string | null;
  readonly selectors: readonly string[];
  /** Workload credential: the foreign trust domains the device federates with (its renewals carry their bundles). */
  readonly federatesWith: readonly string[];
  readonly expiresAt: Date;
  readonly createdBy: string;
  readonly createdAt: Date;
}

export interface RedeemedToken {
  readonly id: string;
  readonly trustDomain: string;
  readonly kind: TokenKind;
  readonly spiffeId: string | null;
  readonly selectors: readonly string[];
  readonly federatesWith: readonly string[];
  readonly expiresAt: Date;
  /** Presented again after its redemption (its first answer may have been lost). */
  readonly repeat: boolean;
  /** The SVID it was redeemed for (DER), once recorded. */
  readonly issuedSvid: Buffer | undefined;
}

export interface FoundToken {
  readonly id: string;
  readonly trustDomain: string;
  readonly kind: TokenKind;
  readonly expiresAt: Date;
  readonly used: boolean;
  readonly issuedSvid: Buffer | undefined;
}

export class TokenStore {
  constructor(private readonly db: Database) {}

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return guard(() => this.db.transaction(fn));
  }

  insert(t: TokenRecord, q: Queryable = this.db): Promise<void> {
    return guard(async () => {
      await q.query(
        `INSERT INTO one_time_tokens (id, trust_domain, kind, secret_hash, spiffe_id, selectors, federates_with, expires_at, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [t.id, t.trustDomain, t.kind, t.secretHash, t.spiffeId, t.selectors, t.federatesWith, t.expiresAt, t.createdBy, t.createdAt],
      );
    });
  }

  /**
   * Single use, enforced by the database: one conditional UPDATE … RETURNING, so of any number of
   * concurrent presentations on any number of replicas exactly one gets the row. The token is
   * consumed even when it turns out to be expired (the caller checks expiry afterwards). Once its
   * SVID is recorded, a later presentation before expiry gets the row back as a `repeat`, to be
   * answered with that same SVID (or refused); `q` is the caller's transaction. The trust domain
   * is the one the token's (unsigned) claims name: a token edited to name another is not touched.
   */
  redeem(id: string, secretHash: Buffer, trustDomain: string, now: Date, q: Queryable = this.db): Promise<RedeemedToken | undefined> {
    return guard(async () => {
      const res = await q.query<{ id: string; trust_domain: string; kind: TokenKind; spiffe_id: string | null; selectors: string[]; federates_with: string[]; expires_at: Date; issued_svid: Uint8Array | null; repeat: boolean }>(
        `UPDATE one_time_tokens t SET used_at = COALESCE(t.used_at, $3)
         FROM (SELECT id, used_at IS NOT NULL AS repeat FROM one_time_tokens WHERE id = $1 FOR UPDATE) prev
         WHERE t.id = prev.id AND t.secret_hash = $2 AND t.trust_domain = $4
           AND (t.used_at IS NULL OR (t.issued_svid IS NOT NULL AND t.expires_at > $3))
         RETURNING t.id, t.trust_domain, t.kind, t.spiffe_id, t.selectors, t.federates_with, t.expires_at, t.issued_svid, prev.repeat`,
        [id, secretHash, now, trustDomain],
      );
      const r = res.rows[0];
      return (
        r && {
          id: r.id, trustDomain: r.trust_domain, kind: r.kind, spiffeId: r.spiffe_id, selectors: r.selectors, federatesWith: r.federates_with, expiresAt: toDate(r.expires_at),
          repeat: r.repeat, issuedSvid: r.issued_svid ? toBuffer(r.issued_svid) : undefined,
        }
      );
    });
  }

  /** The SVID the token was redeemed for, in the redeeming transaction. */
  recordIssued(q: Queryable, id: string, svidDer: Buffer): Promise<void> {
    return guard(async () => {
      await q.query(`UPDATE one_time_tokens SET issued_svid = $2 WHERE id = $1`, [id, svidDer]);
    });
  }

  /**
   * The token with this id and secret, used or not, without changing it: one primary-key read that
   * tells a real token (and its state) from a guess before anything costly is done for the caller.
   */
  find(id: string, secretHash: Buffer, q: Queryable = this.db): Promise<FoundToken | undefined> {
    return guard(async () => {
      const res = await q.query<{ trust_domain: string; kind: TokenKind; expires_at: Date; used: boolean; issued_svid: Uint8Array | null }>(
        `SELECT trust_domain, kind, expires_at, used_at IS NOT NULL AS used, issued_svid FROM one_time_tokens WHERE id = $1 AND secret_hash = $2`,
        [id, secretHash],
      );
      const r = res.rows[0];
      return r && { id, trustDomain: r.trust_domain, kind: r.kind, expiresAt: toDate(r.expires_at), used: r.used, issuedSvid: r.issued_svid ? toBuffer(r.issued_svid) : undefined };
    });
  }

  /** Drops tokens that can no longer be redeemed and no longer matter. */
  purge(before: Date): Promise<number> {
    return guard(async () => (await this.db.query(`DELETE FROM one_time_tokens WHERE expires_at < $1`, [before])).rowCount);
  }
}

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
  readonly expiresAt: Date;
  /** Presented again after its redemption (its first answer may have been lost). */
  readonly repeat: boolean;
  /** The SVID it was redeemed for (DER), once recorded. */
  readonly issuedSvid: Buffer | undefined;
}

export class TokenStore {
  constructor(private readonly db: Database) {}

  insert(t: TokenRecord): Promise<void> {
    return guard(async () => {
      await this.db.query(
        `INSERT INTO one_time_tokens (id, trust_domain, kind, secret_hash, spiffe_id, selectors, expires_at, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [t.id, t.trustDomain, t.kind, t.secretHash, t.spiffeId, t.selectors, t.expiresAt, t.createdBy, t.createdAt],
      );
    });
  }

  /**
   * Single use, enforced by the database: one conditional UPDATE … RETURNING, so of any number of
   * concurrent presentations on any number of replicas exactly one gets the row. The token is
   * consumed even when it turns out to be expired (the caller checks expiry afterwards). Once its
   * SVID is recorded, a later presentation before expiry gets the row back as a `repeat`, to be
   * answered with that same SVID (or refused); `q` is the caller's transaction.
   */
  redeem(id: string, secretHash: Buffer, now: Date, q: Queryable = this.db): Promise<RedeemedToken | undefined> {
    return guard(async () => {
      const res = await q.query<{ id: string; trust_domain: string; kind: TokenKind; spiffe_id: string | null; selectors: string[]; expires_at: Date; issued_svid: Uint8Array | null; repeat: boolean }>(
        `UPDATE one_time_tokens t SET used_at = COALESCE(t.used_at, $3)
         FROM (SELECT id, used_at IS NOT NULL AS repeat FROM one_time_tokens WHERE id = $1 FOR UPDATE) prev
         WHERE t.id = prev.id AND t.secret_hash = $2
           AND (t.used_at IS NULL OR (t.issued_svid IS NOT NULL AND t.expires_at > $3))
         RETURNING t.id, t.trust_domain, t.kind, t.spiffe_id, t.selectors, t.expires_at, t.issued_svid, prev.repeat`,
        [id, secretHash, now],
      );
      const r = res.rows[0];
      return (
        r && {
          id: r.id, trustDomain: r.trust_domain, kind: r.kind, spiffeId: r.spiffe_id, selectors: r.selectors, expiresAt: toDate(r.expires_at),
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

  /** Whether id and secret match a token at all (used or not): tells a replay from a guess. */
  matches(id: string, secretHash: Buffer, q: Queryable = this.db): Promise<boolean> {
    return guard(async () => (await q.query(`SELECT 1 FROM one_time_tokens WHERE id = $1 AND secret_hash = $2`, [id, secretHash])).rows.length > 0);
  }

  /** Drops tokens that can no longer be redeemed and no longer matter. */
  purge(before: Date): Promise<number> {
    return guard(async () => (await this.db.query(`DELETE FROM one_time_tokens WHERE expires_at < $1`, [before])).rowCount);
  }
}

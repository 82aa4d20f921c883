import type { Database } from '../db/database.js';
import { toDate } from '../db/database.js';
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
   * consumed even when it turns out to be expired (the caller checks expiry afterwards).
   */
  redeem(id: string, secretHash: Buffer, now: Date): Promise<RedeemedToken | undefined> {
    return guard(async () => {
      const res = await this.db.query<{ id: string; trust_domain: string; kind: TokenKind; spiffe_id: string | null; selectors: string[]; expires_at: Date }>(
        `UPDATE one_time_tokens SET used_at = $3 WHERE id = $1 AND secret_hash = $2 AND used_at IS NULL
         RETURNING id, trust_domain, kind, spiffe_id, selectors, expires_at`,
        [id, secretHash, now],
      );
      const r = res.rows[0];
      return r && { id: r.id, trustDomain: r.trust_domain, kind: r.kind, spiffeId: r.spiffe_id, selectors: r.selectors, expiresAt: toDate(r.expires_at) };
    });
  }

  /** Whether id and secret match a token at all (used or not): tells a replay from a guess. */
  matches(id: string, secretHash: Buffer): Promise<boolean> {
    return guard(async () => (await this.db.query(`SELECT 1 FROM one_time_tokens WHERE id = $1 AND secret_hash = $2`, [id, secretHash])).rows.length > 0);
  }

  /** Drops tokens that can no longer be redeemed and no longer matter. */
  purge(before: Date): Promise<number> {
    return guard(async () => (await this.db.query(`DELETE FROM one_time_tokens WHERE expires_at < $1`, [before])).rowCount);
  }
}

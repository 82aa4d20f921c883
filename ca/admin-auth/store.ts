import type { Database } from '../db/database.js';
import { guard } from '../db/errors.js';

export class AdminTokenStore {
  constructor(private readonly db: Database) {}

  /** Inserts unless a token with that name or hash exists; returns whether this call inserted. */
  insertIfAbsent(id: string, name: string, tokenHash: Buffer, now: Date): Promise<boolean> {
    return guard(async () => {
      const res = await this.db.query(
        `INSERT INTO admin_tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id`,
        [id, name, tokenHash, now],
      );
      return res.rows.length > 0;
    });
  }

  count(): Promise<number> {
    return guard(async () => {
      const res = await this.db.query<{ n: number | string }>(`SELECT count(*) AS n FROM admin_tokens`);
      return Number(res.rows[0]?.n ?? 0);
    });
  }

  nameByHash(tokenHash: Buffer): Promise<string | undefined> {
    return guard(async () => {
      const res = await this.db.query<{ name: string }>(`SELECT name FROM admin_tokens WHERE token_hash = $1`, [tokenHash]);
      return res.rows[0]?.name;
    });
  }
}

import type { Database, Queryable } from '../db/database.js';
import { guard } from '../db/errors.js';

export class EntryStore {
  constructor(private readonly db: Database) {}

  countForTrustDomain(tx: Queryable, trustDomain: string): Promise<number> {
    return guard(async () => {
      const res = await (tx ?? this.db).query<{ n: number | string }>(`SELECT count(*) AS n FROM registration_entries WHERE trust_domain = $1`, [trustDomain]);
      return Number(res.rows[0]?.n ?? 0);
    });
  }
}

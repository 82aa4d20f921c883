import type { Database, Queryable } from '../db/database.js';
import { toDate } from '../db/database.js';
import { guard } from '../db/errors.js';
import { toPage, type Page } from '../../lib/paging.js';
import type { AdminCredential, Role } from './model.js';

interface Row {
  id: string;
  name: string;
  role: Role;
  trust_domains: string[] | null;
  created_at: Date;
  created_by: string | null;
  expires_at: Date | null;
  last_used_at: Date | null;
}

const COLUMNS = 'id, name, role, trust_domains, created_at, created_by, expires_at, last_used_at';

const fromRow = (r: Row): AdminCredential => ({
  id: r.id,
  name: r.name,
  role: r.role,
  trustDomains: r.trust_domains,
  createdAt: toDate(r.created_at),
  createdBy: r.created_by,
  expiresAt: r.expires_at === null ? null : toDate(r.expires_at),
  lastUsedAt: r.last_used_at === null ? null : toDate(r.last_used_at),
});

/** Replicas starting together configure and bootstrap one after the other. */
const ADMIN_CREDENTIALS_LOCK = 7_352_013;

const UNIQUE = { admin_tokens_name_key: 'admin_exists', admin_tokens_pkey: 'admin_exists', admin_tokens_token_hash_key: 'admin_exists' } as const;

export interface NewAdminCredential {
  readonly id: string;
  readonly name: string;
  readonly tokenHash: Buffer;
  readonly role: Role;
  readonly trustDomains: readonly string[] | null;
  readonly createdAt: Date;
  readonly createdBy: string | null;
  readonly expiresAt: Date | null;
}

/** Admin credentials; only the SHA-256 of each secret is stored. */
export class AdminTokenStore {
  constructor(private readonly db: Database) {}

  /** Runs `fn` in a transaction holding the credentials lock (start-up configuration and bootstrap). */
  exclusive<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return guard(() =>
      this.db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [ADMIN_CREDENTIALS_LOCK]);
        return fn(tx);
      }),
    );
  }

  insert(c: NewAdminCredential, q: Queryable = this.db): Promise<AdminCredential> {
    return guard(async () => {
      const res = await q.query<Row>(
        `INSERT INTO admin_tokens (id, name, token_hash, role, trust_domains, created_at, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
        [c.id, c.name, c.tokenHash, c.role, c.trustDomains, c.createdAt, c.createdBy, c.expiresAt],
      );
      return fromRow(res.rows[0]!);
    }, UNIQUE);
  }

  count(q: Queryable = this.db): Promise<number> {
    return guard(async () => {
      const res = await q.query<{ n: number | string }>(`SELECT count(*) AS n FROM admin_tokens`);
      return Number(res.rows[0]?.n ?? 0);
    });
  }

  byHash(tokenHash: Buffer, q: Queryable = this.db): Promise<AdminCredential | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM admin_tokens WHERE token_hash = $1`, [tokenHash]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  byName(name: string, q: Queryable = this.db): Promise<AdminCredential | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM admin_tokens WHERE name = $1`, [name]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  list(limit: number, after: string | undefined): Promise<Page<AdminCredential>> {
    return guard(async () => {
      const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM admin_tokens WHERE ($1::text IS NULL OR name > $1) ORDER BY name LIMIT $2`, [after ?? null, limit + 1]);
      return toPage(res.rows.map(fromRow), limit, (c) => [c.name]);
    });
  }

  /** Deletes by name; returns what was deleted. */
  delete(name: string, q: Queryable = this.db): Promise<AdminCredential | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`DELETE FROM admin_tokens WHERE name = $1 RETURNING ${COLUMNS}`, [name]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  /** The credentials the configured token replaces: the one named `name` and the legacy ones named `<prefix>…`. */
  deleteConfigured(tx: Queryable, name: string, legacyPrefix: string): Promise<string[]> {
    return guard(async () => {
      const pattern = legacyPrefix.replace(/[\\%_]/g, (c) => '\\' + c) + '%';
      const res = await tx.query<{ name: string }>(`DELETE FROM admin_tokens WHERE name = $1 OR name LIKE $2 RETURNING name`, [name, pattern]);
      return res.rows.map((r) => r.name);
    });
  }

  /**
   * Records a use, unless one was recorded since `staleBefore`: at most about one write per
   * credential per interval, whichever replica served the requests.
   */
  touch(id: string, now: Date, staleBefore: Date): Promise<void> {
    return guard(async () => {
      await this.db.query(`UPDATE admin_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)`, [id, now, staleBefore]);
    });
  }
}

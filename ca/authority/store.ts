import type { Database, Queryable } from '../db/database.js';
import { toBuffer, toDate } from '../db/database.js';
import { guard } from '../db/errors.js';
import type { KeyType } from './key-types.js';

export type AuthorityKind = 'x509' | 'jwt';
export type AuthorityStatus = 'prepared' | 'active' | 'retired';

export interface AuthorityKey {
  /** For JWT keys this is the `kid`. */
  readonly id: string;
  readonly trustDomain: string;
  readonly kind: AuthorityKind;
  readonly keyType: KeyType;
  readonly status: AuthorityStatus;
  /** SPKI DER. */
  readonly publicKey: Buffer;
  /** CA certificate DER (x509 keys only). */
  readonly certificate: Buffer | null;
  readonly privateKeySealed: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly createdAt: Date;
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
}

const COLUMNS = 'id, trust_domain, kind, key_type, status, public_key, certificate, private_key_sealed, not_before, not_after, created_at';

function fromRow(r: Row): AuthorityKey {
  return {
    id: r.id,
    trustDomain: r.trust_domain,
    kind: r.kind as AuthorityKind,
    keyType: r.key_type as KeyType,
    status: r.status as AuthorityStatus,
    publicKey: toBuffer(r.public_key),
    certificate: r.certificate === null ? null : toBuffer(r.certificate),
    privateKeySealed: toBuffer(r.private_key_sealed),
    notBefore: toDate(r.not_before),
    notAfter: toDate(r.not_after),
    createdAt: toDate(r.created_at),
  };
}

export class AuthorityKeyStore {
  constructor(private readonly db: Database) {}

  insert(tx: Queryable, keys: readonly AuthorityKey[]): Promise<void> {
    return guard(async () => {
      for (const k of keys) {
        await tx.query(
          `INSERT INTO authority_keys (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
          [k.id, k.trustDomain, k.kind, k.keyType, k.status, k.publicKey, k.certificate, k.privateKeySealed,
            k.notBefore, k.notAfter, k.createdAt],
        );
      }
    });
  }

  /** Keys a verifier must know: every key not yet expired (prepared, active, or retired but still signing-valid). */
  published(trustDomain: string, now: Date, q: Queryable = this.db): Promise<AuthorityKey[]> {
    return guard(async () => {
      const res = await q.query<Row>(
        `SELECT ${COLUMNS} FROM authority_keys WHERE trust_domain = $1 AND not_after > $2 ORDER BY kind, not_before, id`,
        [trustDomain, now],
      );
      return res.rows.map(fromRow);
    });
  }

  active(trustDomain: string, q: Queryable = this.db): Promise<AuthorityKey[]> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM authority_keys WHERE trust_domain = $1 AND status = 'active'`, [trustDomain]);
      return res.rows.map(fromRow);
    });
  }

  /** The active authority of every trust domain and kind: what the metrics report on each scrape. */
  activeEverywhere(): Promise<{ trustDomain: string; kind: AuthorityKind; notAfter: Date }[]> {
    return guard(async () => {
      const res = await this.db.query<{ trust_domain: string; kind: AuthorityKind; not_after: Date }>(`SELECT trust_domain, kind, not_after FROM authority_keys WHERE status = 'active' ORDER BY trust_domain, kind`);
      return res.rows.map((r) => ({ trustDomain: r.trust_domain, kind: r.kind, notAfter: toDate(r.not_after) }));
    });
  }

  all(trustDomain: string, q: Queryable = this.db): Promise<AuthorityKey[]> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM authority_keys WHERE trust_domain = $1 ORDER BY kind, not_before, id`, [trustDomain]);
      return res.rows.map(fromRow);
    });
  }

  setStatus(tx: Queryable, id: string, status: AuthorityStatus): Promise<void> {
    return guard(async () => {
      await tx.query(`UPDATE authority_keys SET status = $2 WHERE id = $1`, [id, status]);
    });
  }

  deleteExpired(tx: Queryable, trustDomain: string, before: Date): Promise<number> {
    return guard(async () => (await tx.query(`DELETE FROM authority_keys WHERE trust_domain = $1 AND not_after <= $2`, [trustDomain, before])).rowCount);
  }
}

import type { Database, Queryable } from '../db/database.js';
import { toBuffer, toDate, toNumber } from '../db/database.js';
import { guard } from '../db/errors.js';

export interface RevokedSvid {
  readonly serial: string;
  readonly trustDomain: string;
  readonly spiffeId: string;
  /** The agent (or `token:…`, admin, …) the SVID was issued to, as the inventory records it. */
  readonly issuedTo: string;
  readonly notAfter: Date;
  readonly reason: string | null;
  readonly revokedAt: Date;
  readonly revokedBy: string;
}

export interface StoredCrl {
  readonly authorityId: string;
  readonly trustDomain: string;
  readonly crlNumber: number;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly der: Buffer;
}

/** The inventory row a revocation starts from (current SVIDs only). */
export interface CurrentSvid {
  readonly serial: string;
  readonly trustDomain: string;
  readonly spiffeId: string;
  readonly issuedTo: string;
  readonly notAfter: Date;
  /** Set when the serial is already revoked. */
  readonly revokedAt: Date | null;
}

interface RevokedRow {
  serial: string;
  trust_domain: string;
  spiffe_id: string;
  issued_to: string;
  not_after: Date;
  reason: string | null;
  revoked_at: Date;
  revoked_by: string;
}

interface CrlRow {
  authority_id: string;
  trust_domain: string;
  crl_number: string | number;
  this_update: Date;
  next_update: Date;
  der: Uint8Array;
}

const REVOKED = 'serial, trust_domain, spiffe_id, issued_to, not_after, reason, revoked_at, revoked_by';
const CRL = 'authority_id, trust_domain, crl_number, this_update, next_update, der';

const revokedOf = (r: RevokedRow): RevokedSvid => ({
  serial: r.serial, trustDomain: r.trust_domain, spiffeId: r.spiffe_id, issuedTo: r.issued_to, notAfter: toDate(r.not_after), reason: r.reason, revokedAt: toDate(r.revoked_at), revokedBy: r.revoked_by,
});
const crlOf = (r: CrlRow): StoredCrl => ({
  authorityId: r.authority_id, trustDomain: r.trust_domain, crlNumber: toNumber(r.crl_number), thisUpdate: toDate(r.this_update), nextUpdate: toDate(r.next_update), der: toBuffer(r.der),
});

/** Revoked serials (until they expire) and the signed CRLs that list them. */
export class RevocationStore {
  constructor(private readonly db: Database) {}

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return guard(() => this.db.transaction(fn));
  }

  /** Unexpired inventory rows by serial or by SPIFFE ID (in a trust domain), with their revocation if any. */
  current(tx: Queryable, by: { serial: string } | { spiffeId: string }, now: Date): Promise<CurrentSvid[]> {
    return guard(async () => {
      const [column, value] = 'serial' in by ? ['i.serial', by.serial] : ['i.spiffe_id', by.spiffeId];
      const res = await tx.query<{ serial: string; trust_domain: string; spiffe_id: string; issued_to: string; not_after: Date; revoked_at: Date | null }>(
        `SELECT i.serial, i.trust_domain, i.spiffe_id, i.issued_to, i.not_after, r.revoked_at
           FROM issued_x509_svids i LEFT JOIN revoked_x509_svids r ON r.serial = i.serial
          WHERE ${column} = $1 AND i.not_after > $2 ORDER BY i.serial`,
        [value, now],
      );
      return res.rows.map((r) => ({ serial: r.serial, trustDomain: r.trust_domain, spiffeId: r.spiffe_id, issuedTo: r.issued_to, notAfter: toDate(r.not_after), revokedAt: r.revoked_at === null ? null : toDate(r.revoked_at) }));
    });
  }

  /** Records revocations; a serial already revoked keeps its first record. */
  add(tx: Queryable, rows: readonly RevokedSvid[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    return guard(async () => {
      await tx.query(
        `INSERT INTO revoked_x509_svids (${REVOKED})
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::timestamptz[], $8::text[])
         ON CONFLICT (serial) DO NOTHING`,
        [
          rows.map((r) => r.serial), rows.map((r) => r.trustDomain), rows.map((r) => r.spiffeId), rows.map((r) => r.issuedTo),
          rows.map((r) => r.notAfter.toISOString()), rows.map((r) => r.reason), rows.map((r) => r.revokedAt.toISOString()), rows.map((r) => r.revokedBy),
        ],
      );
    });
  }

  /** Whether a serial is revoked: one primary-key lookup (every node mTLS request makes it). */
  isRevoked(serial: string, q: Queryable = this.db): Promise<boolean> {
    return guard(async () => (await q.query(`SELECT 1 FROM revoked_x509_svids WHERE serial = $1`, [serial])).rowCount > 0);
  }

  /** Which of the given serials are revoked, in one query. */
  revokedAmong(serials: readonly string[]): Promise<Set<string>> {
    return guard(async () => new Set((await this.db.query<{ serial: string }>(`SELECT serial FROM revoked_x509_svids WHERE serial = ANY ($1::text[])`, [serials])).rows.map((r) => r.serial)));
  }

  /** The trust domain's revoked serials that have not expired, oldest revocation first. */
  unexpired(trustDomain: string, now: Date, q: Queryable = this.db): Promise<RevokedSvid[]> {
    return guard(async () => {
      const res = await q.query<RevokedRow>(`SELECT ${REVOKED} FROM revoked_x509_svids WHERE trust_domain = $1 AND not_after > $2 ORDER BY revoked_at, serial`, [trustDomain, now]);
      return res.rows.map(revokedOf);
    });
  }

  /** Unexpired revoked serials of SVIDs issued to each of the given agents, sorted; agents holding none are absent. */
  heldByMany(issuedTo: readonly string[], now: Date): Promise<Map<string, string[]>> {
    return guard(async () => {
      const res = await this.db.query<{ issued_to: string; serial: string }>(
        `SELECT issued_to, serial FROM revoked_x509_svids WHERE issued_to = ANY ($1::text[]) AND not_after > $2 ORDER BY issued_to, serial`,
        [issuedTo, now],
      );
      const held = new Map<string, string[]>();
      for (const r of res.rows) {
        const serials = held.get(r.issued_to);
        if (serials) serials.push(r.serial);
        else held.set(r.issued_to, [r.serial]);
      }
      return held;
    });
  }

  /** Forgets revocations of certificates that have expired (no CRL lists them any more). */
  prune(tx: Queryable, trustDomain: string, now: Date): Promise<number> {
    return guard(async () => (await tx.query(`DELETE FROM revoked_x509_svids WHERE trust_domain = $1 AND not_after <= $2`, [trustDomain, now])).rowCount);
  }

  crls(trustDomain: string, q: Queryable = this.db): Promise<StoredCrl[]> {
    return guard(async () => {
      const res = await q.query<CrlRow>(`SELECT ${CRL} FROM x509_crls WHERE trust_domain = $1 ORDER BY authority_id`, [trustDomain]);
      return res.rows.map(crlOf);
    });
  }

  /** Replaces the trust domain's CRLs with `crls` (those of authorities no longer published go). */
  replaceCrls(tx: Queryable, trustDomain: string, crls: readonly StoredCrl[]): Promise<void> {
    return guard(async () => {
      await tx.query(`DELETE FROM x509_crls WHERE trust_domain = $1`, [trustDomain]);
      for (const c of crls) {
        await tx.query(`INSERT INTO x509_crls (${CRL}) VALUES ($1, $2, $3, $4, $5, $6)`, [c.authorityId, c.trustDomain, c.crlNumber, c.thisUpdate, c.nextUpdate, c.der]);
      }
    });
  }
}

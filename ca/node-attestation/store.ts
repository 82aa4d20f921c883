import type { Database, Queryable } from '../db/database.js';
import { toBuffer, toDate, toNumber } from '../db/database.js';
import { guard } from '../db/errors.js';

export type AttestorKind = 'k8s_psat' | 'x509pop';

export interface AttestorRecord<C = unknown> {
  readonly trustDomain: string;
  readonly kind: AttestorKind;
  readonly name: string;
  readonly config: C;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** An outstanding x509pop challenge: what checking the answer needs, not the chain the device sent. */
export interface ChallengeRecord {
  readonly id: string;
  readonly trustDomain: string;
  readonly attestor: string;
  /** SHA-1 of the device certificate, hex. */
  readonly fingerprint: string;
  /** The device certificate's SubjectPublicKeyInfo (DER). */
  readonly publicKey: Buffer;
  /** SHA-1 of the manufacturer CA the chain verified to, and the earliest notAfter on the way. */
  readonly anchor: string;
  readonly validUntil: Date;
  readonly selectors: readonly string[];
  readonly nonce: Buffer;
  readonly expiresAt: Date;
}

/** Outstanding challenges allowed per device certificate and in all. */
export interface ChallengeCaps {
  readonly perCertificate: number;
  readonly total: number;
}

interface ChallengeRow {
  id: string;
  trust_domain: string;
  attestor: string;
  fingerprint: string;
  public_key: Uint8Array;
  anchor: string;
  valid_until: Date;
  selectors: string[];
  nonce: Uint8Array;
  expires_at: Date;
}

/** Arbitrary constant: the advisory-lock class for "one device certificate's challenges". */
const CHALLENGE_LOCK = 7_352_007;

interface AttestorRow {
  trust_domain: string;
  kind: AttestorKind;
  name: string;
  config: unknown;
  created_at: Date;
  updated_at: Date;
}

const attestorOf = (r: AttestorRow): AttestorRecord => ({
  trustDomain: r.trust_domain,
  kind: r.kind,
  name: r.name,
  config: typeof r.config === 'string' ? JSON.parse(r.config) : r.config,
  createdAt: toDate(r.created_at),
  updatedAt: toDate(r.updated_at),
});

/** Attestor configuration, single-use credential records and x509pop challenges. */
export class NodeAttestationStore {
  constructor(private readonly db: Database) {}

  upsert(trustDomain: string, kind: AttestorKind, name: string, config: unknown, now: Date): Promise<AttestorRecord> {
    return guard(async () => {
      const res = await this.db.query<AttestorRow>(
        `INSERT INTO node_attestors (trust_domain, kind, name, config, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (trust_domain, kind, name) DO UPDATE SET config = EXCLUDED.config, updated_at = EXCLUDED.updated_at
         RETURNING trust_domain, kind, name, config, created_at, updated_at`,
        [trustDomain, kind, name, JSON.stringify(config), now],
      );
      return attestorOf(res.rows[0]!);
    });
  }

  get(trustDomain: string, kind: AttestorKind, name: string): Promise<AttestorRecord | undefined> {
    return guard(async () => {
      const res = await this.db.query<AttestorRow>(
        `SELECT trust_domain, kind, name, config, created_at, updated_at FROM node_attestors WHERE trust_domain = $1 AND kind = $2 AND name = $3`,
        [trustDomain, kind, name],
      );
      return res.rows[0] ? attestorOf(res.rows[0]) : undefined;
    });
  }

  list(trustDomain: string, kind?: AttestorKind): Promise<AttestorRecord[]> {
    return guard(async () => {
      const res = await this.db.query<AttestorRow>(
        `SELECT trust_domain, kind, name, config, created_at, updated_at FROM node_attestors
         WHERE trust_domain = $1 AND ($2::text IS NULL OR kind = $2) ORDER BY kind, name`,
        [trustDomain, kind ?? null],
      );
      return res.rows.map(attestorOf);
    });
  }

  delete(trustDomain: string, kind: AttestorKind, name: string): Promise<boolean> {
    return guard(async () => ((await this.db.query(`DELETE FROM node_attestors WHERE trust_domain = $1 AND kind = $2 AND name = $3`, [trustDomain, kind, name])).rowCount ?? 0) > 0);
  }

  /** Records a credential as used; false when it was already used (a replay), on any replica. `q`: the caller's transaction. */
  recordUse(hash: Buffer, expiresAt: Date, now: Date, q: Queryable = this.db): Promise<boolean> {
    return guard(async () => {
      await q.query(`DELETE FROM used_attestation_credentials WHERE expires_at < $1`, [now]);
      const res = await q.query(`INSERT INTO used_attestation_credentials (credential_hash, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [hash, expiresAt]);
      return (res.rowCount ?? 0) === 1;
    });
  }

  /**
   * Stores a challenge unless the caps are reached: then nothing is written and the answer is when
   * the oldest outstanding challenge in the way expires. This certificate's expired ones are deleted on the way.
   */
  createChallenge(c: ChallengeRecord, now: Date, caps: ChallengeCaps): Promise<{ created: true } | { created: false; scope: 'certificate' | 'total'; retryAt: Date }> {
    return guard(() =>
      this.db.transaction(async (tx) => {
        // One writer per certificate at a time (across replicas), so its cap holds exactly.
        await tx.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [CHALLENGE_LOCK, `${c.trustDomain}/${c.fingerprint}`]);
        await tx.query(`DELETE FROM x509pop_challenges WHERE trust_domain = $1 AND fingerprint = $2 AND expires_at <= $3`, [c.trustDomain, c.fingerprint, now]);
        const mine = await tx.query<{ n: number | string; oldest: Date | null }>(
          `SELECT count(*) AS n, min(expires_at) AS oldest FROM x509pop_challenges WHERE trust_domain = $1 AND fingerprint = $2`,
          [c.trustDomain, c.fingerprint],
        );
        if (toNumber(mine.rows[0]!.n) >= caps.perCertificate) return { created: false as const, scope: 'certificate' as const, retryAt: toDate(mine.rows[0]!.oldest) };
        // Other certificates' expired challenges are left to reclaim() (housekeeping), not counted.
        const all = await tx.query<{ n: number | string; oldest: Date | null }>(`SELECT count(*) AS n, min(expires_at) AS oldest FROM x509pop_challenges WHERE expires_at > $1`, [now]);
        if (toNumber(all.rows[0]!.n) >= caps.total) return { created: false as const, scope: 'total' as const, retryAt: toDate(all.rows[0]!.oldest) };
        await tx.query(
          `INSERT INTO x509pop_challenges (id, trust_domain, attestor, fingerprint, public_key, anchor, valid_until, selectors, nonce, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [c.id, c.trustDomain, c.attestor, c.fingerprint, c.publicKey, c.anchor, c.validUntil, c.selectors, c.nonce, c.expiresAt],
        );
        return { created: true as const };
      }),
    );
  }

  /** An unexpired challenge, left in place: it is deleted with the enrollment it leads to (or its failure). */
  getChallenge(id: string, now: Date): Promise<ChallengeRecord | undefined> {
    return guard(async () => {
      const res = await this.db.query<ChallengeRow>(
        `SELECT id, trust_domain, attestor, fingerprint, public_key, anchor, valid_until, selectors, nonce, expires_at FROM x509pop_challenges WHERE id = $1`,
        [id],
      );
      const r = res.rows[0];
      if (!r || toDate(r.expires_at) <= now) return undefined;
      return {
        id: r.id, trustDomain: r.trust_domain, attestor: r.attestor, fingerprint: r.fingerprint, publicKey: toBuffer(r.public_key), anchor: r.anchor,
        validUntil: toDate(r.valid_until), selectors: r.selectors, nonce: toBuffer(r.nonce), expiresAt: toDate(r.expires_at),
      };
    });
  }

  /** Answers a challenge once: false when another answer took it first. `q`: the enrollment's transaction. */
  deleteChallenge(id: string, q: Queryable = this.db): Promise<boolean> {
    return guard(async () => (await q.query(`DELETE FROM x509pop_challenges WHERE id = $1`, [id])).rowCount === 1);
  }

  /**
   * Deletes expired challenges and used-credential records. The embedded store has no autovacuum,
   * so there the space of what was deleted is reclaimed here too (VACUUM: reusable at once, and
   * given back to the file system when it is at the end of the table).
   */
  reclaim(now: Date): Promise<{ challenges: number; credentials: number }> {
    return guard(async () => {
      const challenges = (await this.db.query(`DELETE FROM x509pop_challenges WHERE expires_at <= $1`, [now])).rowCount ?? 0;
      const credentials = (await this.db.query(`DELETE FROM used_attestation_credentials WHERE expires_at < $1`, [now])).rowCount ?? 0;
      if (this.db.kind === 'embedded' && challenges + credentials > 0) await this.db.query('VACUUM x509pop_challenges, used_attestation_credentials');
      return { challenges, credentials };
    });
  }
}

import type { Database, Queryable } from '../db/database.js';
import { toDate } from '../db/database.js';
import { guard } from '../db/errors.js';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';

export type AttestorKind = 'k8s_psat' | 'x509pop';

export interface AttestorRecord<C = unknown> {
  readonly trustDomain: string;
  readonly kind: AttestorKind;
  readonly name: string;
  readonly config: C;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface ChallengeRecord {
  readonly id: string;
  readonly trustDomain: string;
  readonly attestor: string;
  readonly nonce: Buffer;
  readonly chain: Buffer[];
  readonly expiresAt: Date;
}

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

  createChallenge(c: ChallengeRecord, now: Date): Promise<void> {
    return guard(async () => {
      await this.db.query(`DELETE FROM attestation_challenges WHERE expires_at < $1`, [now]);
      await this.db.query(
        `INSERT INTO attestation_challenges (id, trust_domain, attestor, nonce, chain, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
        [c.id, c.trustDomain, c.attestor, c.nonce, Buffer.concat(c.chain), c.expiresAt],
      );
    });
  }

  /** Takes a challenge out (it can be answered once); undefined when unknown, used or expired. */
  /** An unexpired challenge, left in place: it is deleted with the enrollment it leads to (or its failure). */
  getChallenge(id: string, now: Date): Promise<ChallengeRecord | undefined> {
    return guard(async () => {
      const res = await this.db.query<{ id: string; trust_domain: string; attestor: string; nonce: Buffer; chain: Buffer; expires_at: Date }>(
        `SELECT id, trust_domain, attestor, nonce, chain, expires_at FROM attestation_challenges WHERE id = $1`,
        [id],
      );
      const r = res.rows[0];
      if (!r || toDate(r.expires_at) <= now) return undefined;
      return { id: r.id, trustDomain: r.trust_domain, attestor: r.attestor, nonce: Buffer.from(r.nonce), chain: splitDerCertificates(Buffer.from(r.chain)), expiresAt: toDate(r.expires_at) };
    });
  }

  /** Answers a challenge once: false when another answer took it first. `q`: the enrollment's transaction. */
  deleteChallenge(id: string, q: Queryable = this.db): Promise<boolean> {
    return guard(async () => (await q.query(`DELETE FROM attestation_challenges WHERE id = $1`, [id])).rowCount === 1);
  }
}

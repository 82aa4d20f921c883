import type { Database, Queryable } from '../db/database.js';
import { toDate } from '../db/database.js';
import { guard } from '../db/errors.js';
import { notifyChange } from '../db/changes.js';
import { toPage, type Page } from '../../lib/paging.js';

export type NodeKind = 'agent' | 'device';

export interface AttestedNode {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly kind: NodeKind;
  readonly attestationType: string;
  readonly selectors: readonly string[];
  /** A device: the foreign trust domains its workload credential federates with (their bundles come with each renewal). */
  readonly federatesWith: readonly string[];
  readonly serial: string;
  readonly newSerial: string | null;
  readonly expiresAt: Date;
  readonly banned: boolean;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

interface Row {
  spiffe_id: string;
  trust_domain: string;
  kind: NodeKind;
  attestation_type: string;
  selectors: string[];
  federates_with: string[];
  serial: string;
  new_serial: string | null;
  expires_at: Date;
  banned: boolean;
  created_at: Date;
  updated_at: Date;
}

/**
 * `banned` comes from the deny-list (node_bans), matched on the node's SPIFFE ID and what its
 * attestor recorded besides (ban_subjects: a device fingerprint, a Kubernetes node UID).
 */
const COLUMNS = `n.spiffe_id, n.trust_domain, n.kind, n.attestation_type, n.selectors, n.federates_with, n.serial, n.new_serial, n.expires_at,
  EXISTS (SELECT 1 FROM node_bans b WHERE b.trust_domain = n.trust_domain AND b.subject = ANY (array_append(n.ban_subjects, 'spiffe_id:' || n.spiffe_id))) AS banned,
  n.created_at, n.updated_at`;

const fromRow = (r: Row): AttestedNode => ({
  spiffeId: r.spiffe_id,
  trustDomain: r.trust_domain,
  kind: r.kind,
  attestationType: r.attestation_type,
  selectors: r.selectors,
  federatesWith: r.federates_with,
  serial: r.serial,
  newSerial: r.new_serial,
  expiresAt: toDate(r.expires_at),
  banned: r.banned,
  createdAt: toDate(r.created_at),
  updatedAt: toDate(r.updated_at),
});

export class NodeStore {
  constructor(private readonly db: Database) {}

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return guard(() => this.db.transaction(fn));
  }

  get(spiffeId: string, q: Queryable = this.db): Promise<AttestedNode | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM attested_nodes n WHERE n.spiffe_id = $1`, [spiffeId]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  /** The records of the given nodes that exist, in one query. */
  getMany(spiffeIds: readonly string[]): Promise<AttestedNode[]> {
    return guard(async () => {
      const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM attested_nodes n WHERE n.spiffe_id = ANY ($1::text[])`, [spiffeIds]);
      return res.rows.map(fromRow);
    });
  }

  lock(tx: Queryable, spiffeId: string): Promise<AttestedNode | undefined> {
    return guard(async () => {
      const res = await tx.query<Row>(`SELECT ${COLUMNS} FROM attested_nodes n WHERE n.spiffe_id = $1 FOR UPDATE OF n`, [spiffeId]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  /**
   * Records a (re-)attestation: the new SVID becomes the only one accepted. `banSubjects`: what
   * besides its SPIFFE ID the node can be banned by (see bans/service.ts).
   */
  upsert(tx: Queryable, n: Omit<AttestedNode, 'banned' | 'createdAt' | 'updatedAt' | 'newSerial'> & { banSubjects: readonly string[] }, now: Date): Promise<void> {
    return guard(async () => {
      await tx.query(
        `INSERT INTO attested_nodes (spiffe_id, trust_domain, kind, attestation_type, selectors, serial, new_serial, expires_at, banned, ban_subjects, created_at, updated_at, federates_with)
         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, false, $9, $8, $8, $10)
         ON CONFLICT (spiffe_id) DO UPDATE SET attestation_type = EXCLUDED.attestation_type, selectors = EXCLUDED.selectors, ban_subjects = EXCLUDED.ban_subjects,
           federates_with = EXCLUDED.federates_with,
           serial = EXCLUDED.serial, new_serial = NULL, new_expires_at = NULL, expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at`,
        [n.spiffeId, n.trustDomain, n.kind, n.attestationType, n.selectors, n.serial, n.expiresAt, now, n.banSubjects, n.federatesWith],
      );
      await notifyChange(tx, { kind: 'node', trustDomain: n.trustDomain, node: n.spiffeId });
    });
  }

  setNewSerial(spiffeId: string, serial: string, expiresAt: Date, now: Date, q: Queryable = this.db): Promise<void> {
    return guard(async () => {
      await q.query(`UPDATE attested_nodes SET new_serial = $2, new_expires_at = $3, updated_at = $4 WHERE spiffe_id = $1`, [spiffeId, serial, expiresAt, now]);
    });
  }

  /** The node used its just-issued SVID: from now on only that one is accepted. */
  promote(spiffeId: string, serial: string, now: Date): Promise<void> {
    return guard(async () => {
      await this.db.query(
        `UPDATE attested_nodes SET serial = new_serial, expires_at = COALESCE(new_expires_at, expires_at), new_serial = NULL, new_expires_at = NULL, updated_at = $3
         WHERE spiffe_id = $1 AND new_serial = $2`,
        [spiffeId, serial, now],
      );
    });
  }

  delete(spiffeId: string, q: Queryable = this.db): Promise<boolean> {
    return guard(async () => (await q.query(`DELETE FROM attested_nodes WHERE spiffe_id = $1`, [spiffeId])).rowCount > 0);
  }

  /** The nodes a ban subject names: by SPIFFE ID, or by what their attestor recorded (a device fingerprint, a node UID). */
  withBanSubject(trustDomain: string, subject: string): Promise<AttestedNode[]> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `SELECT ${COLUMNS} FROM attested_nodes n WHERE n.trust_domain = $1 AND ($2 = ANY (n.ban_subjects) OR 'spiffe_id:' || n.spiffe_id = $2)`,
        [trustDomain, subject],
      );
      return res.rows.map(fromRow);
    });
  }

  /** Devices of `trustDomain` whose credential federates with `foreign` (a bundle they would lose). */
  federatingWith(trustDomain: string, foreign: string, q: Queryable = this.db): Promise<{ count: number; example: string | undefined }> {
    return guard(async () => {
      const res = await q.query<{ n: number | string; example: string | null }>(
        `SELECT count(*) AS n, min(spiffe_id) AS example FROM attested_nodes WHERE trust_domain = $1 AND $2 = ANY(federates_with)`,
        [trustDomain, foreign],
      );
      return { count: Number(res.rows[0]!.n), example: res.rows[0]!.example ?? undefined };
    });
  }

  list(
    filter: { trustDomain?: string | undefined; trustDomains?: readonly string[] | undefined; kind?: NodeKind | undefined },
    limit: number,
    after: string | undefined,
  ): Promise<Page<AttestedNode>> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `SELECT ${COLUMNS} FROM attested_nodes n WHERE ($1::text IS NULL OR n.trust_domain = $1) AND ($2::text IS NULL OR n.kind = $2)
           AND ($3::text IS NULL OR n.spiffe_id > $3) AND ($5::text[] IS NULL OR n.trust_domain = ANY($5::text[])) ORDER BY n.spiffe_id LIMIT $4`,
        [filter.trustDomain ?? null, filter.kind ?? null, after ?? null, limit + 1, filter.trustDomains ?? null],
      );
      return toPage(res.rows.map(fromRow), limit, (n) => [n.spiffeId]);
    });
  }
}

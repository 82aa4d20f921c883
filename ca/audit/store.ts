import type { Database, Queryable } from '../db/database.js';
import { toBuffer, toDate, toNumber } from '../db/database.js';
import { guard } from '../db/errors.js';
import { frontier } from '../../lib/merkle.js';

/** One entry as appended: its canonical JSON, and the fields search filters on (copied out of it). */
export interface AuditRow {
  /** Stored as its UTF-8 bytes: it stays text until then (a Buffer per entry, decoded again for the query, cost ~7% of the event loop in batch issuance). */
  readonly text: string;
  readonly time: Date;
  readonly event: string;
  readonly actor: string;
  readonly spiffeId: string | null;
  readonly serial: string | null;
}

export interface AuditLogRecord {
  readonly origin: string;
  readonly publicKey: Buffer;
  readonly privateKeySealed: Buffer;
  readonly size: number;
  readonly root: Buffer;
}

export interface StoredCheckpoint {
  readonly size: number;
  readonly root: Buffer;
  readonly note: string;
  readonly createdAt: Date;
}

export interface AuditFilter {
  readonly event?: string | undefined;
  readonly actor?: string | undefined;
  readonly spiffeId?: string | undefined;
  readonly serial?: string | undefined;
  readonly since?: Date | undefined;
  readonly until?: Date | undefined;
}

/** What integration computes from the tree's frontier and the new leaves (lib/merkle.ts extend). */
export type Extend = (size: number, frontier: ReadonlyMap<string, Buffer>, leaves: Buffer[]) => { nodes: { level: number; index: number; hash: Buffer }[]; root: Buffer };

const checkpointOf = (r: { size: unknown; root: Uint8Array; note: string; created_at: unknown }): StoredCheckpoint => ({
  size: toNumber(r.size), root: toBuffer(r.root), note: r.note, createdAt: toDate(r.created_at),
});

export class AuditStore {
  constructor(readonly db: Database) {}

  /** One multi-row INSERT for the whole list, in the caller's transaction. */
  append(q: Queryable, rows: readonly AuditRow[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    return guard(async () => {
      // the canonical JSON travels as text (cheaper to encode than bytea arrays) and is stored as its UTF-8 bytes
      await q.query(
        `INSERT INTO audit_entries (data, time, event, actor, spiffe_id, serial)
         SELECT convert_to(d, 'UTF8'), t, e, a, s, n FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(d, t, e, a, s, n)`,
        [rows.map((r) => r.text), rows.map((r) => r.time.toISOString()), rows.map((r) => r.event), rows.map((r) => r.actor), rows.map((r) => r.spiffeId), rows.map((r) => r.serial)],
      );
    });
  }

  log(): Promise<AuditLogRecord | undefined> {
    return guard(async () => {
      const res = await this.db.query<{ origin: string; public_key: Uint8Array; private_key_sealed: Uint8Array; size: unknown; root: Uint8Array }>(
        `SELECT origin, public_key, private_key_sealed, size, root FROM audit_log WHERE id = 'default'`,
      );
      const r = res.rows[0];
      return r && { origin: r.origin, publicKey: toBuffer(r.public_key), privateKeySealed: toBuffer(r.private_key_sealed), size: toNumber(r.size), root: toBuffer(r.root) };
    });
  }

  /** First replica wins; the others read what it wrote. */
  createIfAbsent(r: AuditLogRecord, at: Date): Promise<void> {
    return guard(async () => {
      await this.db.query(
        `INSERT INTO audit_log (id, origin, public_key, private_key_sealed, size, root, created_at) VALUES ('default', $1, $2, $3, 0, $4, $5) ON CONFLICT (id) DO NOTHING`,
        [r.origin, r.publicKey, r.privateKeySealed, r.root, at],
      );
    });
  }

  /**
   * Numbers up to `max` committed, unnumbered entries in seq order after the current size, and
   * stores the subtrees they complete and the new root — under the log row's lock, so replicas
   * integrate one at a time and indexes have no gap. Returns the tree after it.
   */
  integrate(max: number, extend: Extend): Promise<{ size: number; root: Buffer; added: number }> {
    return guard(() =>
      this.db.transaction(async (tx) => {
        const log = await tx.query<{ size: unknown; root: Uint8Array }>(`SELECT size, root FROM audit_log WHERE id = 'default' FOR UPDATE`);
        const row = log.rows[0];
        if (!row) throw new Error('the audit log is not created');
        const size = toNumber(row.size);
        const pending = await tx.query<{ seq: unknown; data: Uint8Array }>(`SELECT seq, data FROM audit_entries WHERE idx IS NULL ORDER BY seq LIMIT $1`, [max]);
        if (pending.rows.length === 0) return { size, root: toBuffer(row.root), added: 0 };
        const edge = await this.readNodes(tx, frontier(size));
        const { nodes, root } = extend(size, edge, pending.rows.map((r) => toBuffer(r.data)));
        const seqs = pending.rows.map((r) => String(r.seq));
        await tx.query(
          `UPDATE audit_entries e SET idx = n.idx FROM unnest($1::bigint[], $2::bigint[]) AS n(seq, idx) WHERE e.seq = n.seq`,
          [seqs, seqs.map((_, i) => String(size + i))],
        );
        await tx.query(
          `INSERT INTO audit_tree_nodes (level, index, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])`,
          [nodes.map((n) => n.level), nodes.map((n) => String(n.index)), nodes.map((n) => n.hash)],
        );
        const newSize = size + pending.rows.length;
        await tx.query(`UPDATE audit_log SET size = $1, root = $2 WHERE id = 'default'`, [newSize, root]);
        return { size: newSize, root, added: pending.rows.length };
      }),
    );
  }

  /** Complete-subtree hashes by `level/index`. */
  nodes(keys: readonly [number, number][]): Promise<Map<string, Buffer>> {
    return guard(() => this.readNodes(this.db, keys));
  }

  private async readNodes(q: Queryable, keys: readonly [number, number][]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    if (keys.length === 0) return out;
    const res = await q.query<{ level: number; index: unknown; hash: Uint8Array }>(
      `SELECT n.level, n.index, n.hash FROM audit_tree_nodes n JOIN unnest($1::smallint[], $2::bigint[]) AS k(level, index) ON n.level = k.level AND n.index = k.index`,
      [keys.map((k) => k[0]), keys.map((k) => String(k[1]))],
    );
    for (const r of res.rows) out.set(`${r.level}/${toNumber(r.index)}`, toBuffer(r.hash));
    return out;
  }

  /** Integrated entries with start ≤ index < end, in order. */
  entries(start: number, end: number): Promise<{ index: number; data: Buffer }[]> {
    return guard(async () => {
      const res = await this.db.query<{ idx: unknown; data: Uint8Array }>(`SELECT idx, data FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx`, [start, end]);
      return res.rows.map((r) => ({ index: toNumber(r.idx), data: toBuffer(r.data) }));
    });
  }

  /** Integrated entries matching every given filter, by index, from `after` (exclusive). */
  search(f: AuditFilter, limit: number, after: number): Promise<{ index: number; data: Buffer }[]> {
    return guard(async () => {
      const res = await this.db.query<{ idx: unknown; data: Uint8Array }>(
        `SELECT idx, data FROM audit_entries
          WHERE idx IS NOT NULL AND idx > $1
            AND ($2::text IS NULL OR event = $2) AND ($3::text IS NULL OR actor = $3)
            AND ($4::text IS NULL OR spiffe_id = $4) AND ($5::text IS NULL OR serial = $5)
            AND ($6::timestamptz IS NULL OR time >= $6) AND ($7::timestamptz IS NULL OR time < $7)
          ORDER BY idx LIMIT $8`,
        [after, f.event ?? null, f.actor ?? null, f.spiffeId ?? null, f.serial ?? null, f.since ?? null, f.until ?? null, limit],
      );
      return res.rows.map((r) => ({ index: toNumber(r.idx), data: toBuffer(r.data) }));
    });
  }

  latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    return guard(async () => {
      const res = await this.db.query<{ size: unknown; root: Uint8Array; note: string; created_at: unknown }>(`SELECT size, root, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1`);
      return res.rows[0] && checkpointOf(res.rows[0]);
    });
  }

  /** True when this call stored it (another replica may have signed the same size first). */
  addCheckpoint(c: StoredCheckpoint): Promise<boolean> {
    return guard(async () => {
      const res = await this.db.query(`INSERT INTO audit_checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING`, [c.size, c.root, c.note, c.createdAt]);
      return res.rowCount === 1;
    });
  }

  pending(): Promise<number> {
    return guard(async () => toNumber((await this.db.query<{ n: unknown }>(`SELECT count(*) AS n FROM audit_entries WHERE idx IS NULL`)).rows[0]!.n));
  }
}

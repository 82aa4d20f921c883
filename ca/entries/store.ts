import type { ErrorCode } from '../../lib/errors.js';
import type { Database, Queryable } from '../db/database.js';
import { toDate, toNumber } from '../db/database.js';
import { guard } from '../db/errors.js';
import { toPage, type Page } from '../../lib/paging.js';
import { DEFAULT_ENTRY_ADMIN_ROLE, type Role } from '../admin-auth/model.js';
import type { Entry, EntryFilter, NewEntry } from './model.js';

interface Row {
  id: string;
  trust_domain: string;
  spiffe_id: string;
  parent_id: string;
  selectors: string[];
  x509_svid_ttl_seconds: number | null;
  jwt_svid_ttl_seconds: number | null;
  dns_names: string[];
  hint: string | null;
  admin: boolean;
  admin_role: Role | null;
  federates_with: string[];
  expires_at: Date | null;
  revision: number | string;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = `id, trust_domain, spiffe_id, parent_id, selectors, x509_svid_ttl_seconds, jwt_svid_ttl_seconds, dns_names,
  hint, admin, admin_role, federates_with, expires_at, revision, created_at, updated_at`;

/**
 * Entry writers take this lock so revisions are handed out and committed in order: a reader that
 * sees revision R has seen everything up to R, which is what makes incremental sync exact.
 */
const ENTRY_WRITE_LOCK = 7_352_002;

/** A transaction holding the entry write lock, for every writer of the revision sequence (entries, templates). */
export function underEntryWriteLock<T>(db: Database, fn: (tx: Queryable) => Promise<T>, onUnique: Readonly<Record<string, ErrorCode>>): Promise<T> {
  return guard(
    () =>
      db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [ENTRY_WRITE_LOCK]);
        return fn(tx);
      }),
    onUnique,
  );
}

function fromRow(r: Row): Entry {
  return {
    id: r.id,
    trustDomain: r.trust_domain,
    spiffeId: r.spiffe_id,
    parentId: r.parent_id,
    selectors: r.selectors,
    x509SvidTtlSeconds: r.x509_svid_ttl_seconds === null ? null : toNumber(r.x509_svid_ttl_seconds),
    jwtSvidTtlSeconds: r.jwt_svid_ttl_seconds === null ? null : toNumber(r.jwt_svid_ttl_seconds),
    dnsNames: r.dns_names,
    hint: r.hint,
    admin: r.admin,
    // an admin entry from before roles existed has none stored: it gets the default
    adminRole: r.admin ? (r.admin_role ?? DEFAULT_ENTRY_ADMIN_ROLE) : null,
    federatesWith: r.federates_with,
    expiresAt: r.expires_at === null ? null : toDate(r.expires_at),
    revision: toNumber(r.revision),
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
  };
}

/** A node alias: entries under `spiffeId` go to every node holding all of `selectors`. */
export interface AliasEntry {
  readonly spiffeId: string;
  readonly selectors: readonly string[];
}

export interface AliasDefinitions {
  readonly aliases: AliasEntry[];
  /** The newest revision at which an alias was created, changed or removed (0: never). */
  readonly revision: number;
}

const UNIQUE = { registration_entries_identity: 'entry_exists', registration_entries_pkey: 'entry_exists' } as const;

export class EntryStore {
  constructor(private readonly db: Database) {}

  /** Runs `fn` holding the entry write lock; commit order then equals revision order. */
  write<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return underEntryWriteLock(this.db, fn, UNIQUE);
  }

  insert(tx: Queryable, e: NewEntry, now: Date): Promise<Entry> {
    return guard(async () => {
      const res = await tx.query<Row>(
        `INSERT INTO registration_entries (id, trust_domain, spiffe_id, parent_id, selectors, x509_svid_ttl_seconds, jwt_svid_ttl_seconds,
           dns_names, hint, admin, federates_with, expires_at, created_at, updated_at, admin_role)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14) RETURNING ${COLUMNS}`,
        [e.id, e.trustDomain, e.spiffeId, e.parentId, e.selectors, e.x509SvidTtlSeconds, e.jwtSvidTtlSeconds, e.dnsNames, e.hint, e.admin, e.federatesWith, e.expiresAt, now, e.adminRole],
      );
      return fromRow(res.rows[0]!);
    }, UNIQUE);
  }

  /**
   * Inserts many entries in one statement (a batch create); an entry whose identity (or ID) is
   * already taken is skipped rather than failing the others, and is missing from the answer. Rows
   * take revisions in the order given; all commit together under the write lock.
   */
  insertMany(tx: Queryable, entries: readonly NewEntry[], now: Date): Promise<Entry[]> {
    if (entries.length === 0) return Promise.resolve([]);
    return guard(async () => {
      const params: unknown[] = [now];
      const rows = entries.map((e) => {
        const at = params.length;
        params.push(e.id, e.trustDomain, e.spiffeId, e.parentId, e.selectors, e.x509SvidTtlSeconds, e.jwtSvidTtlSeconds, e.dnsNames, e.hint, e.admin, e.federatesWith, e.expiresAt, e.adminRole);
        return `(${Array.from({ length: 13 }, (_, i) => `$${at + i + 1}`).join(', ')}, $1, $1)`;
      });
      const res = await tx.query<Row>(
        `INSERT INTO registration_entries (id, trust_domain, spiffe_id, parent_id, selectors, x509_svid_ttl_seconds, jwt_svid_ttl_seconds,
           dns_names, hint, admin, federates_with, expires_at, admin_role, created_at, updated_at)
         VALUES ${rows.join(', ')} ON CONFLICT DO NOTHING RETURNING ${COLUMNS}`,
        params,
      );
      return res.rows.map(fromRow);
    }, UNIQUE);
  }

  /** For each identity (SPIFFE ID, parent, selectors), the entry holding it, if any: to name it when a batch item collides. */
  findIdentities(ids: readonly Pick<NewEntry, 'spiffeId' | 'parentId' | 'selectors'>[], q: Queryable = this.db): Promise<Entry[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return guard(async () => {
      // selectors are arrays per row: they travel as JSON, since unnest would flatten a text[][]
      const res = await q.query<Row>(
        `SELECT ${COLUMNS} FROM registration_entries
         WHERE (spiffe_id, parent_id, selectors) IN (SELECT sid, pid, sel FROM jsonb_to_recordset($1::jsonb) AS k(sid text, pid text, sel text[]))`,
        [JSON.stringify(ids.map((e) => ({ sid: e.spiffeId, pid: e.parentId, sel: e.selectors })))],
      );
      return res.rows.map(fromRow);
    });
  }

  replace(tx: Queryable, e: NewEntry, now: Date): Promise<Entry | undefined> {
    return guard(async () => {
      const res = await tx.query<Row>(
        `UPDATE registration_entries SET spiffe_id = $2, parent_id = $3, selectors = $4, x509_svid_ttl_seconds = $5, jwt_svid_ttl_seconds = $6,
           dns_names = $7, hint = $8, admin = $9, federates_with = $10, expires_at = $11, updated_at = $12, revision = nextval('entry_revisions'),
           admin_role = $13
         WHERE id = $1 RETURNING ${COLUMNS}`,
        [e.id, e.spiffeId, e.parentId, e.selectors, e.x509SvidTtlSeconds, e.jwtSvidTtlSeconds, e.dnsNames, e.hint, e.admin, e.federatesWith, e.expiresAt, now, e.adminRole],
      );
      return res.rows[0] && fromRow(res.rows[0]);
    }, UNIQUE);
  }

  tombstone(tx: Queryable, entry: Pick<Entry, 'id' | 'trustDomain' | 'parentId'>, now: Date): Promise<void> {
    return guard(async () => {
      await tx.query(`INSERT INTO entry_tombstones (entry_id, trust_domain, parent_id, created_at) VALUES ($1, $2, $3, $4)`, [entry.id, entry.trustDomain, entry.parentId, now]);
    });
  }

  delete(tx: Queryable, id: string): Promise<Entry | undefined> {
    return guard(async () => {
      const res = await tx.query<Row>(`DELETE FROM registration_entries WHERE id = $1 RETURNING ${COLUMNS}`, [id]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  get(id: string, q: Queryable = this.db): Promise<Entry | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM registration_entries WHERE id = $1`, [id]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  /** The entry holding this identity (the unique key), for naming it when a create or update collides. */
  findIdentity(e: Pick<NewEntry, 'spiffeId' | 'parentId' | 'selectors'>): Promise<Entry | undefined> {
    return guard(async () => {
      const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM registration_entries WHERE spiffe_id = $1 AND parent_id = $2 AND selectors = $3::text[]`, [e.spiffeId, e.parentId, e.selectors]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  list(filter: EntryFilter, limit: number, after: string | undefined): Promise<Page<Entry>> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `SELECT ${COLUMNS} FROM registration_entries
         WHERE ($1::text IS NULL OR trust_domain = $1) AND ($2::text IS NULL OR parent_id = $2)
           AND ($3::text IS NULL OR spiffe_id = $3) AND ($4::text[] IS NULL OR selectors @> $4::text[])
           AND ($5::text IS NULL OR id > $5) AND ($7::text[] IS NULL OR trust_domain = ANY($7::text[]))
         ORDER BY id LIMIT $6`,
        [filter.trustDomain ?? null, filter.parentId ?? null, filter.spiffeId ?? null, filter.selectors?.length ? filter.selectors : null, after ?? null, limit + 1, filter.trustDomains ?? null],
      );
      return toPage(res.rows.map(fromRow), limit, (e) => [e.id]);
    });
  }

  countForTrustDomain(tx: Queryable, trustDomain: string): Promise<number> {
    return guard(async () => {
      const res = await tx.query<{ n: number | string }>(`SELECT count(*) AS n FROM registration_entries WHERE trust_domain = $1`, [trustDomain]);
      return Number(res.rows[0]?.n ?? 0);
    });
  }

  /** Node aliases: entries parented to the server whose selectors all belong to the node. */
  aliasesFor(trustDomain: string, serverId: string, nodeSelectors: readonly string[]): Promise<string[]> {
    if (nodeSelectors.length === 0) return Promise.resolve([]);
    return guard(async () => {
      const res = await this.db.query<{ spiffe_id: string }>(
        `SELECT DISTINCT spiffe_id FROM registration_entries WHERE trust_domain = $1 AND parent_id = $2 AND selectors <@ $3::text[]`,
        [trustDomain, serverId, nodeSelectors],
      );
      return res.rows.map((r) => r.spiffe_id).sort();
    });
  }

  /**
   * Every node alias definition of the trust domain (entries parented to the server), for sync: one
   * read shared by all the long-polls a change wakes, each matching its own node (`parentsFrom`). With
   * it, the newest revision at which an alias was created, changed or removed: an agent holding an
   * older revision may hold parents that are no longer its own.
   */
  aliasEntries(trustDomain: string, serverId: string): Promise<AliasDefinitions> {
    return guard(async () => {
      const [defs, removed] = await Promise.all([
        this.db.query<{ spiffe_id: string; selectors: string[]; revision: string }>(
          `SELECT spiffe_id, selectors, revision FROM registration_entries WHERE trust_domain = $1 AND parent_id = $2`,
          [trustDomain, serverId],
        ),
        this.db.query<{ revision: string | null }>(`SELECT max(revision) AS revision FROM entry_tombstones WHERE parent_id = $1`, [serverId]),
      ]);
      return {
        aliases: defs.rows.map((r) => ({ spiffeId: r.spiffe_id, selectors: r.selectors })),
        revision: defs.rows.reduce((n, r) => Math.max(n, Number(r.revision)), Number(removed.rows[0]?.revision ?? 0)),
      };
    });
  }

  /** The parents (agents, node aliases) of a trust domain's admin entries: whoever they serve gets admin SVIDs. */
  adminParents(trustDomain: string): Promise<string[]> {
    return guard(async () => {
      const res = await this.db.query<{ parent_id: string }>(`SELECT DISTINCT parent_id FROM registration_entries WHERE trust_domain = $1 AND admin`, [trustDomain]);
      return res.rows.map((r) => r.parent_id);
    });
  }

  /** The foreign trust domains that entries parented to any of `parents` federate with (what their agent must deliver). */
  federatedWith(parents: readonly string[]): Promise<{ parentId: string; trustDomain: string }[]> {
    return guard(async () => {
      if (parents.length === 0) return [];
      const res = await this.db.query<{ parent_id: string; td: string }>(
        `SELECT DISTINCT parent_id, unnest(federates_with) AS td FROM registration_entries WHERE parent_id = ANY($1) ORDER BY td`,
        [[...parents]],
      );
      return res.rows.map((r) => ({ parentId: r.parent_id, trustDomain: r.td }));
    });
  }

  /** How many entries of `trustDomain` federate with `foreign`, and one of their SPIFFE IDs. */
  federatingWith(trustDomain: string, foreign: string, q: Queryable = this.db): Promise<{ count: number; example: string | undefined }> {
    return guard(async () => {
      const res = await q.query<{ n: number | string; example: string | null }>(
        `SELECT count(*) AS n, min(spiffe_id) AS example FROM registration_entries WHERE trust_domain = $1 AND $2 = ANY(federates_with)`,
        [trustDomain, foreign],
      );
      return { count: toNumber(res.rows[0]!.n), example: res.rows[0]!.example ?? undefined };
    });
  }

  /** The newest committed revision across entries and tombstones. */
  latestRevision(): Promise<number> {
    return guard(async () => {
      const res = await this.db.query<{ r: number | string | null }>(
        `SELECT GREATEST((SELECT max(revision) FROM registration_entries), (SELECT max(revision) FROM entry_tombstones)) AS r`,
      );
      return Number(res.rows[0]?.r ?? 0);
    });
  }

  /** Entries under any of `parents` changed after `revision` (all of them when revision is 0). */
  changedSince(parents: readonly string[], revision: number): Promise<Entry[]> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `SELECT ${COLUMNS} FROM registration_entries WHERE parent_id = ANY($1::text[]) AND revision > $2 ORDER BY revision`,
        [parents, revision],
      );
      return res.rows.map(fromRow);
    });
  }

  /** Entries that left any of `parents` (deleted, or moved to another parent) after `revision`, with the parent they left. */
  removedSince(parents: readonly string[], revision: number): Promise<{ id: string; parentId: string }[]> {
    return guard(async () => {
      const res = await this.db.query<{ entry_id: string; parent_id: string }>(
        `SELECT DISTINCT entry_id, parent_id FROM entry_tombstones WHERE parent_id = ANY($1::text[]) AND revision > $2`,
        [parents, revision],
      );
      return res.rows.map((r) => ({ id: r.entry_id, parentId: r.parent_id }));
    });
  }

  forParents(parents: readonly string[], ids: readonly string[]): Promise<Entry[]> {
    return guard(async () => {
      const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM registration_entries WHERE parent_id = ANY($1::text[]) AND id = ANY($2::text[])`, [parents, ids]);
      return res.rows.map(fromRow);
    });
  }
}

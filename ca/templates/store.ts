import type { Database, Queryable } from '../db/database.js';
import { toDate, toNumber } from '../db/database.js';
import { guard } from '../db/errors.js';
import { toPage, type Page } from '../../lib/paging.js';
import { DEFAULT_ENTRY_ADMIN_ROLE, type Role } from '../admin-auth/model.js';
import { underEntryWriteLock } from '../entries/store.js';
import type { IdentityTemplate, NewTemplate, TemplateFilter } from './model.js';

interface Row {
  id: string;
  trust_domain: string;
  parent_id: string;
  selectors: string[];
  spiffe_id_template: string;
  dns_templates: string[];
  x509_svid_ttl_seconds: number | null;
  jwt_svid_ttl_seconds: number | null;
  hint: string | null;
  admin: boolean;
  admin_role: Role | null;
  federates_with: string[];
  revision: number | string;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = `id, trust_domain, parent_id, selectors, spiffe_id_template, dns_templates, x509_svid_ttl_seconds, jwt_svid_ttl_seconds,
  hint, admin, admin_role, federates_with, revision, created_at, updated_at`;

function fromRow(r: Row): IdentityTemplate {
  return {
    id: r.id,
    trustDomain: r.trust_domain,
    parentId: r.parent_id,
    selectors: r.selectors,
    spiffeIdTemplate: r.spiffe_id_template,
    dnsTemplates: r.dns_templates,
    x509SvidTtlSeconds: r.x509_svid_ttl_seconds === null ? null : toNumber(r.x509_svid_ttl_seconds),
    jwtSvidTtlSeconds: r.jwt_svid_ttl_seconds === null ? null : toNumber(r.jwt_svid_ttl_seconds),
    hint: r.hint,
    admin: r.admin,
    adminRole: r.admin ? (r.admin_role ?? DEFAULT_ENTRY_ADMIN_ROLE) : null,
    federatesWith: r.federates_with,
    revision: toNumber(r.revision),
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
  };
}

const UNIQUE = { identity_templates_identity: 'template_exists', identity_templates_pkey: 'template_exists' } as const;

export class TemplateStore {
  constructor(private readonly db: Database) {}

  /**
   * Runs `fn` holding the entries' write lock: templates take revisions from the same sequence, so
   * commit order must equal revision order across both for one sync cursor to be exact.
   */
  write<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return underEntryWriteLock(this.db, fn, UNIQUE);
  }

  insert(tx: Queryable, t: NewTemplate, now: Date): Promise<IdentityTemplate> {
    return guard(async () => {
      const res = await tx.query<Row>(
        `INSERT INTO identity_templates (id, trust_domain, parent_id, selectors, spiffe_id_template, dns_templates, x509_svid_ttl_seconds,
           jwt_svid_ttl_seconds, hint, admin, admin_role, federates_with, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING ${COLUMNS}`,
        [t.id, t.trustDomain, t.parentId, t.selectors, t.spiffeIdTemplate, t.dnsTemplates, t.x509SvidTtlSeconds, t.jwtSvidTtlSeconds, t.hint, t.admin, t.adminRole, t.federatesWith, now],
      );
      return fromRow(res.rows[0]!);
    }, UNIQUE);
  }

  delete(tx: Queryable, id: string, now: Date): Promise<IdentityTemplate | undefined> {
    return guard(async () => {
      const res = await tx.query<Row>(`DELETE FROM identity_templates WHERE id = $1 RETURNING ${COLUMNS}`, [id]);
      const gone = res.rows[0] && fromRow(res.rows[0]);
      if (gone) {
        await tx.query(`INSERT INTO identity_template_tombstones (template_id, trust_domain, parent_id, created_at) VALUES ($1, $2, $3, $4)`, [gone.id, gone.trustDomain, gone.parentId, now]);
      }
      return gone;
    });
  }

  get(id: string, q: Queryable = this.db): Promise<IdentityTemplate | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(`SELECT ${COLUMNS} FROM identity_templates WHERE id = $1`, [id]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  findIdentity(t: Pick<NewTemplate, 'spiffeIdTemplate' | 'parentId' | 'selectors'>): Promise<IdentityTemplate | undefined> {
    return guard(async () => {
      const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM identity_templates WHERE spiffe_id_template = $1 AND parent_id = $2 AND selectors = $3::text[]`, [t.spiffeIdTemplate, t.parentId, t.selectors]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }

  list(filter: TemplateFilter, limit: number, after: string | undefined): Promise<Page<IdentityTemplate>> {
    return guard(async () => {
      const res = await this.db.query<Row>(
        `SELECT ${COLUMNS} FROM identity_templates
         WHERE ($1::text IS NULL OR trust_domain = $1) AND ($2::text IS NULL OR parent_id = $2)
           AND ($3::text IS NULL OR id > $3) AND ($5::text[] IS NULL OR trust_domain = ANY($5::text[]))
         ORDER BY id LIMIT $4`,
        [filter.trustDomain ?? null, filter.parentId ?? null, after ?? null, limit + 1, filter.trustDomains ?? null],
      );
      return toPage(res.rows.map(fromRow), limit, (t) => [t.id]);
    });
  }

  /** The parents (agents, node aliases) of a trust domain's admin templates. */
  countForTrustDomain(tx: Queryable, trustDomain: string): Promise<number> {
    return guard(async () => {
      const res = await tx.query<{ n: number | string }>(`SELECT count(*) AS n FROM identity_templates WHERE trust_domain = $1`, [trustDomain]);
      return Number(res.rows[0]?.n ?? 0);
    });
  }

  adminParents(trustDomain: string): Promise<string[]> {
    return guard(async () => {
      const res = await this.db.query<{ parent_id: string }>(`SELECT DISTINCT parent_id FROM identity_templates WHERE trust_domain = $1 AND admin`, [trustDomain]);
      return res.rows.map((r) => r.parent_id);
    });
  }

  latestRevision(): Promise<number> {
    return guard(async () => {
      const res = await this.db.query<{ r: number | string | null }>(
        `SELECT GREATEST((SELECT max(revision) FROM identity_templates), (SELECT max(revision) FROM identity_template_tombstones)) AS r`,
      );
      return Number(res.rows[0]?.r ?? 0);
    });
  }

  /** The foreign trust domains that templates parented to any of `parents` federate with. */
  federatedWith(parents: readonly string[]): Promise<{ parentId: string; trustDomain: string }[]> {
    return guard(async () => {
      if (parents.length === 0) return [];
      const res = await this.db.query<{ parent_id: string; td: string }>(
        `SELECT DISTINCT parent_id, unnest(federates_with) AS td FROM identity_templates WHERE parent_id = ANY($1::text[]) ORDER BY td`,
        [[...parents]],
      );
      return res.rows.map((r) => ({ parentId: r.parent_id, trustDomain: r.td }));
    });
  }

  changedSince(parents: readonly string[], revision: number): Promise<IdentityTemplate[]> {
    return guard(async () => {
      const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM identity_templates WHERE parent_id = ANY($1::text[]) AND revision > $2 ORDER BY revision`, [parents, revision]);
      return res.rows.map(fromRow);
    });
  }

  /** Templates that left any of `parents` after `revision`, with the parent they left. */
  removedSince(parents: readonly string[], revision: number): Promise<{ id: string; parentId: string }[]> {
    return guard(async () => {
      const res = await this.db.query<{ template_id: string; parent_id: string }>(
        `SELECT DISTINCT template_id, parent_id FROM identity_template_tombstones WHERE parent_id = ANY($1::text[]) AND revision > $2`,
        [parents, revision],
      );
      return res.rows.map((r) => ({ id: r.template_id, parentId: r.parent_id }));
    });
  }

  /** The template, if it is under one of `parents`. */
  forParents(parents: readonly string[], id: string): Promise<IdentityTemplate | undefined> {
    return guard(async () => {
      const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM identity_templates WHERE parent_id = ANY($1::text[]) AND id = $2`, [parents, id]);
      return res.rows[0] && fromRow(res.rows[0]);
    });
  }
}

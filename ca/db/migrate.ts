import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Database, Queryable } from './database.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  /**
   * Declared by a `-- cairn:expand-only` line in the file: the migration only adds (tables, nullable
   * or defaulted columns, indexes) and code that does not know it keeps working on the schema it
   * leaves. Recorded in schema_migrations when applied, so replicas that never saw the file can read it.
   */
  readonly expandOnly: boolean;
}

/** Arbitrary constant: the advisory lock every Cairn replica takes while migrating. */
const MIGRATION_LOCK = 7_352_001;

const EXPAND_ONLY = /^--\s*cairn:expand-only\s*$/m;

export function loadMigrations(dir: string): Migration[] {
  const files = readdirSync(dir).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const migrations = files.map((file) => {
    const sql = readFileSync(join(dir, file), 'utf8');
    return { version: Number(file.slice(0, 4)), name: file.slice(5, -4), sql, expandOnly: EXPAND_ONLY.test(sql) };
  });
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migrations must be numbered 0001, 0002, … without gaps (found ${m.version} at ${i + 1})`);
  });
  return migrations;
}

/** The newest schema version a list of migrations knows (0 for none). */
export const latestVersion = (migrations: readonly Migration[]): number => migrations.at(-1)?.version ?? 0;

interface AppliedRow {
  readonly version: number;
  readonly name: string;
  readonly expandOnly: boolean;
}

/**
 * What the database records as applied, read without DDL (a runtime user without CREATE rights can
 * run it). Rows written before schema_migrations had `expand_only` count as not expand-only.
 */
async function appliedMigrations(db: Queryable): Promise<{ rows: AppliedRow[]; hasExpandOnly: boolean; hasTable: boolean }> {
  // The catalog rather than information_schema, whose views are slow (noticeably so on PGlite).
  const columns = await db.query<{ column_name: string }>(
    `SELECT attname AS column_name FROM pg_attribute WHERE attrelid = to_regclass('schema_migrations') AND attnum > 0 AND NOT attisdropped`,
  );
  const names = new Set(columns.rows.map((r) => r.column_name));
  if (names.size === 0) return { rows: [], hasExpandOnly: false, hasTable: false };
  const hasExpandOnly = names.has('expand_only');
  const res = await db.query<{ version: number | string; name: string; expand_only?: boolean }>(
    `SELECT version, name${hasExpandOnly ? ', expand_only' : ''} FROM schema_migrations ORDER BY version`,
  );
  return { rows: res.rows.map((r) => ({ version: Number(r.version), name: r.name, expandOnly: r.expand_only === true })), hasExpandOnly, hasTable: true };
}

/**
 * Forward-only: each migration in its own transaction, under a transaction-scoped advisory lock, so
 * replicas starting together against one database apply each migration exactly once; whoever
 * waits on the lock sees the version row and skips. A database that already has every migration
 * is only read, so a replica whose user may not run DDL starts on a migrated schema.
 */
export async function migrate(db: Database, migrations: readonly Migration[]): Promise<number[]> {
  const before = await appliedMigrations(db);
  const done = new Set(before.rows.map((r) => r.version));
  if (before.hasExpandOnly && migrations.every((m) => done.has(m.version))) return [];
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    // Not a numbered migration: the migrator's own bookkeeping, which older replicas must be able to
    // read before they know any migration that comes after theirs.
    await tx.query('ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS expand_only boolean NOT NULL DEFAULT false');
  });
  const applied: number[] = [];
  for (const m of migrations) {
    const ran = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const found = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
      if (found.rowCount > 0 || found.rows.length > 0) return false;
      await tx.query('INSERT INTO schema_migrations (version, name, expand_only) VALUES ($1, $2, $3)', [m.version, m.name, m.expandOnly]);
      for (const statement of splitStatements(m.sql)) await tx.query(statement);
      return true;
    });
    if (ran) applied.push(m.version);
  }
  return applied;
}

export async function schemaVersion(db: Database): Promise<number> {
  const { rows } = await appliedMigrations(db);
  return rows.at(-1)?.version ?? 0;
}

/** How the database's schema relates to the migrations this code knows. */
export type SchemaStatus =
  | { readonly kind: 'current'; readonly version: number; readonly known: number }
  /** Some migration this code needs is not applied: `cairn migrate` (or a start without --no-migrate). */
  | { readonly kind: 'behind'; readonly version: number; readonly known: number; readonly missing: readonly number[] }
  /** Newer migrations are applied and all are expand-only: this code keeps working. */
  | { readonly kind: 'newer_compatible'; readonly version: number; readonly known: number; readonly newer: readonly number[] }
  /** A newer migration this code cannot run beside (it changed or removed something): refuse. */
  | { readonly kind: 'newer_incompatible'; readonly version: number; readonly known: number; readonly breaking: readonly { version: number; name: string }[] };

export async function schemaStatus(db: Queryable, migrations: readonly Migration[]): Promise<SchemaStatus> {
  const { rows } = await appliedMigrations(db);
  const known = latestVersion(migrations);
  const version = rows.at(-1)?.version ?? 0;
  const applied = new Set(rows.map((r) => r.version));
  const missing = migrations.filter((m) => !applied.has(m.version)).map((m) => m.version);
  if (missing.length > 0) return { kind: 'behind', version, known, missing };
  const newer = rows.filter((r) => r.version > known);
  if (newer.length === 0) return { kind: 'current', version, known };
  const breaking = newer.filter((r) => !r.expandOnly).map((r) => ({ version: r.version, name: r.name }));
  if (breaking.length > 0) return { kind: 'newer_incompatible', version, known, breaking };
  return { kind: 'newer_compatible', version, known, newer: newer.map((r) => r.version) };
}

/** Whether a CA may serve on this schema. */
export const schemaServes = (status: SchemaStatus): boolean => status.kind === 'current' || status.kind === 'newer_compatible';

/** One sentence for an operator, naming the database's version and the one this code knows. */
export function describeSchema(status: SchemaStatus, codeVersion: string): string {
  switch (status.kind) {
    case 'current':
      return `the database schema is at version ${status.version}, the one this Cairn (${codeVersion}) knows`;
    case 'behind':
      return `the database schema is at version ${status.version} but this Cairn (${codeVersion}) needs version ${status.known}: run \`cairn migrate\` with the same database settings (or start without --no-migrate)`;
    case 'newer_compatible':
      return `the database schema is at version ${status.version}, newer than this Cairn (${codeVersion}) knows (${status.known}); the newer migrations are expand-only, so this version keeps working beside newer replicas`;
    case 'newer_incompatible': {
      const list = status.breaking.map((b) => `${b.version} (${b.name})`).join(', ');
      return `the database schema is at version ${status.version}, newer than this Cairn (${codeVersion}) knows (${status.known}), and migration ${list} is not backward compatible: run a Cairn that knows schema version ${status.version}`;
    }
  }
}

/**
 * Splits a migration file into statements for drivers whose extended protocol takes one statement
 * per query. Our migrations keep to plain DDL/DML: no dollar quoting, no semicolons inside strings.
 */
export function splitStatements(sql: string): string[] {
  return sql
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('--'))
    .join('\n')
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

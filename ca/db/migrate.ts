import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from './database.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Arbitrary constant: the advisory lock every Cairn replica takes while migrating. */
const MIGRATION_LOCK = 7_352_001;

export function loadMigrations(dir: string): Migration[] {
  const files = readdirSync(dir).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const migrations = files.map((file) => ({
    version: Number(file.slice(0, 4)),
    name: file.slice(5, -4),
    sql: readFileSync(join(dir, file), 'utf8'),
  }));
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migrations must be numbered 0001, 0002, … without gaps (found ${m.version} at ${i + 1})`);
  });
  return migrations;
}

/**
 * Forward-only: each migration in its own transaction, under a transaction-scoped advisory lock, so
 * replicas starting together against one database apply each migration exactly once; whoever
 * waits on the lock sees the version row and skips.
 */
export async function migrate(db: Database, migrations: readonly Migration[]): Promise<number[]> {
  const applied: number[] = [];
  for (const m of migrations) {
    const ran = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await tx.query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (
           version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const done = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
      if (done.rowCount > 0 || done.rows.length > 0) return false;
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      for (const statement of splitStatements(m.sql)) await tx.query(statement);
      return true;
    });
    if (ran) applied.push(m.version);
  }
  return applied;
}

export async function schemaVersion(db: Database): Promise<number> {
  const res = await db.query<{ v: number | string | null }>(
    `SELECT max(version) AS v FROM schema_migrations`,
  );
  return Number(res.rows[0]?.v ?? 0);
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

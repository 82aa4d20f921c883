import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import type { Database } from '../../ca/db/database.js';
import { openEmbedded } from '../../ca/db/embedded.js';
import { loadMigrations, migrate } from '../../ca/db/migrate.js';
import { openPostgres } from '../../ca/db/pg.js';
import { packageRoot } from '../../lib/paths.js';

export type StoreKind = 'embedded' | 'postgres';

/** Which store this run of the suite targets (scripts/test.sh runs the suite once per store). */
export function storeKind(): StoreKind {
  return process.env.CAIRN_TEST_STORE === 'postgres' ? 'postgres' : 'embedded';
}

export const migrations = () => loadMigrations(join(packageRoot(), 'migrations'));

function adminUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('CAIRN_TEST_STORE=postgres needs DATABASE_URL (scripts/test.sh sets it)');
  return url;
}

export function urlForDatabase(name: string): string {
  const u = new URL(adminUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

/** A brand-new empty PostgreSQL database on the test server; returns its URL and a dropper. */
export async function createPgDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `cairn_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return {
    url: urlForDatabase(name),
    drop: async () => {
      const c = new pg.Client({ connectionString: adminUrl() });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export interface TestDatabase {
  readonly db: Database;
  /** Connection string when the store is a real PostgreSQL (to share it with another process). */
  readonly url?: string;
  close(): Promise<void>;
}

/** A fresh, migrated database of the store under test. */
export async function testDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const migrated = options.migrated ?? true;
  if (storeKind() === 'embedded') {
    const db = await openEmbedded();
    if (migrated) await migrate(db, migrations());
    return { db, close: () => db.close() };
  }
  const { url, drop } = await createPgDatabase();
  const db = openPostgres({ connectionString: url });
  if (migrated) await migrate(db, migrations());
  return {
    db,
    url,
    async close() {
      await db.close();
      await drop();
    },
  };
}

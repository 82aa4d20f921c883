import { describe, expect, it } from 'vitest';
import { migrate, schemaVersion, splitStatements } from '../../ca/db/migrate.js';
import { openPostgres } from '../../ca/db/pg.js';
import { createPgDatabase, migrations, storeKind, testDatabase } from '../support/db.js';

describe(`migrations (${storeKind()} store)`, () => {
  it('apply every numbered file once and are idempotent on restart', async () => {
    const t = await testDatabase({ migrated: false });
    try {
      const all = migrations();
      expect(all.map((m) => m.version)).toEqual(all.map((_, i) => i + 1));
      expect(await migrate(t.db, all)).toEqual(all.map((m) => m.version));
      expect(await migrate(t.db, all)).toEqual([]);
      expect(await schemaVersion(t.db)).toBe(all.length);
      const tables = await t.db.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`);
      expect(tables.rows.map((r) => r.tablename)).toEqual(
        expect.arrayContaining(['admin_tokens', 'authority_keys', 'issued_x509_svids', 'registration_entries', 'schema_migrations', 'trust_domains']),
      );
    } finally {
      await t.close();
    }
  });

  it('are safe when several replicas migrate one database at once', async () => {
    if (storeKind() === 'embedded') {
      // One process owns an embedded database; concurrency here means concurrent callers.
      const t = await testDatabase({ migrated: false });
      try {
        const results = await Promise.all([migrate(t.db, migrations()), migrate(t.db, migrations()), migrate(t.db, migrations())]);
        expect(results.flat().sort((a, b) => a - b)).toEqual(migrations().map((m) => m.version));
      } finally {
        await t.close();
      }
      return;
    }
    const { url, drop } = await createPgDatabase();
    const replicas = Array.from({ length: 4 }, () => openPostgres({ connectionString: url }));
    try {
      const results = await Promise.all(replicas.map((db) => migrate(db, migrations())));
      // each migration ran in exactly one replica
      expect(results.flat().sort((a, b) => a - b)).toEqual(migrations().map((m) => m.version));
      const rows = await replicas[0]!.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.rows.map((r) => r.version)).toEqual(migrations().map((m) => m.version));
    } finally {
      await Promise.all(replicas.map((db) => db.close()));
      await drop();
    }
  });

  it('splits files into statements and drops comment lines', () => {
    expect(splitStatements('-- c\nCREATE TABLE a (x int);\n\n-- d\nCREATE INDEX i ON a (x);')).toEqual(['CREATE TABLE a (x int)', 'CREATE INDEX i ON a (x)']);
  });
});

import { makeDirs } from '../../lib/fs.js';
import { PGlite } from '@electric-sql/pglite';
import type { Database, Queryable, QueryResult } from './database.js';

/**
 * The embedded default: PostgreSQL compiled to WebAssembly (PGlite), in-process, persisted in the
 * data dir. No binaries to download, no server to run as another user; one process owns it.
 */
function wrap(q: Pick<PGlite, 'query'>): Queryable {
  return {
    async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      const res = await q.query<R>(sql, params as unknown[] | undefined);
      return { rows: res.rows, rowCount: res.affectedRows || res.rows.length };
    },
  };
}

export async function openEmbedded(dataDir?: string): Promise<Database> {
  if (dataDir) makeDirs(dataDir, 0o700); // not mkdirSync's recursive: it reports a read-only disk as ENOENT
  const db = await PGlite.create(dataDir ?? 'memory://');
  return {
    kind: 'embedded',
    ...wrap(db),
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    async listen(channel, onNotify) {
      const unsub = await db.listen(channel, onNotify);
      return () => unsub();
    },
    close: () => db.close(),
  };
}

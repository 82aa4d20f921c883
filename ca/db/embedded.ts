import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { makeDirs } from '../../lib/fs.js';
import { collectGarbage } from '../../lib/memory.js';
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

/**
 * PostgreSQL's default buffer pool is 128 MB, and in PGlite it is allocated and touched inside the
 * WASM heap at start: resident for the life of the process, for a database that holds a few MB.
 * 16 MB keeps the CA's working set (entries, inventory, keys) cached with room to spare; the OS
 * page cache still sits under it. PGlite runs one backend, so its shared-memory tables for 100
 * connections are waste too.
 */
export const EMBEDDED_SETTINGS: readonly string[] = ['shared_buffers=16MB', 'max_connections=10'];

export async function openEmbedded(dataDir?: string): Promise<Database> {
  if (dataDir) makeDirs(dataDir, 0o700); // not mkdirSync's recursive: it reports a read-only disk as ENOENT
  const fresh = !dataDir || !existsSync(join(dataDir, 'PG_VERSION'));
  // PostgreSQL as WebAssembly, compiled by V8's baseline compiler only: the optimising tier's code
  // for a 10 MB module costs ~40 MB resident, and measured over thousands of the CA's queries it
  // saves no CPU (its compile time eats the gain). Read when the module is compiled, just below.
  setFlagsFromString('--liftoff-only');
  const db = await PGlite.create(dataDir ?? 'memory://', { startParams: [...PGlite.defaultStartParams, ...EMBEDDED_SETTINGS.flatMap((s) => ['-c', s])] });
  // A new database is made by initdb in a second WASM instance and copied over as a tar image:
  // hundreds of MB of garbage that an idle CA would otherwise keep resident.
  if (fresh) collectGarbage();
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

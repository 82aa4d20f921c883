import pg from 'pg';
import { spawnCairn, type Spawned } from '../test/support/processes.js';

export interface BenchCa {
  readonly process: Spawned;
  readonly httpUrl: string;
  /** An admin REST call; throws on a non-2xx answer. Loosely typed: a bench reads back a few fields it just wrote. */
  admin(path: string, body?: unknown, method?: string): Promise<any>;
}

export interface BenchCaOptions {
  /** Empty the schema first (default). A second replica joins the first one's database: false. */
  readonly reset?: boolean;
  /** Extra environment, e.g. CAIRN_KEK_FILE for a replica sharing the first one's key-encryption key. */
  readonly env?: Record<string, string>;
  /** PostgreSQL application_name of this process's connections (to tell replicas apart in pg_stat_activity). */
  readonly applicationName?: string;
}

/**
 * `cairn ca start` as its own process on the PostgreSQL that `npm run bench` started, on an emptied
 * schema, with a known admin token.
 */
export async function startBenchCa(dataDir: string, nodeArgs: string[] = [], options: BenchCaOptions = {}): Promise<BenchCa> {
  let databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) throw new Error('this benchmark needs DATABASE_URL (npm run bench starts a private PostgreSQL)');
  if (options.reset ?? true) {
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    await db.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
    await db.end();
  }
  if (options.applicationName) {
    const u = new URL(databaseUrl);
    u.searchParams.set('application_name', options.applicationName);
    databaseUrl = u.toString();
  }
  const adminToken = 'cairn-admin.' + 'b'.repeat(43);
  const ca = spawnCairn(['ca', 'start', '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'], { CAIRN_DATA_DIR: dataDir, DATABASE_URL: databaseUrl, CAIRN_ADMIN_TOKEN: adminToken, CAIRN_LOG_LEVEL: 'warn', ...options.env }, nodeArgs);
  try {
    await ca.waitFor(/listening on/);
  } catch (err) {
    await ca.stop();
    throw err;
  }
  const httpUrl = /listening on (http:\/\/\S+)/.exec(ca.stdout())![1]!; // the banner, on stdout
  return {
    process: ca,
    httpUrl,
    async admin(path, body, method = body === undefined ? 'GET' : 'POST') {
      const res = await fetch(httpUrl + path, { method, headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      return res.status === 204 ? undefined : res.json();
    },
  };
}

/** How many X.509-SVIDs the CA's inventory holds under a SPIFFE ID prefix (every page). */
export async function issuedUnder(ca: BenchCa, prefix: string): Promise<number> {
  let issued = 0;
  let pageToken = '';
  do {
    const page = await ca.admin(`/v1/x509-svids?spiffeIdPrefix=${encodeURIComponent(prefix)}&pageSize=500${pageToken ? `&pageToken=${pageToken}` : ''}`);
    issued += page.svids.length;
    pageToken = page.nextPageToken ?? '';
  } while (pageToken);
  return issued;
}

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPgDatabase, storeKind } from './db.js';
import { freePort, spawnCairn, type Spawned } from './processes.js';

/**
 * `cairn ca start` as a real process for fault tests: fixed ports and data dir, so a restart comes
 * back where agents and tokens expect it (their persisted CA URL, the token's claims).
 */
export interface CaProcess {
  readonly httpUrl: string;
  readonly tlsUrl: string;
  readonly process: Spawned;
  /** An admin REST call with the bootstrap admin token; the parsed JSON body. */
  admin<T = Record<string, unknown>>(path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** SIGKILL: no shutdown, no goodbye; resolves once the process is gone. */
  kill(): Promise<void>;
  /** Starts the CA again on the same data, ports and database. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A CA process on the store this run of the suite targets: on PostgreSQL in a fresh database of its
 * own, dropped by `close()`; on the embedded store in its data dir.
 */
export async function startCaOnTestStore(dataDir: string, env?: Record<string, string | undefined>): Promise<CaProcess & { close(): Promise<void> }> {
  const db = storeKind() === 'postgres' ? await createPgDatabase() : undefined;
  const ca = await startCaProcess({ dataDir, databaseUrl: db?.url, env });
  return Object.assign(ca, {
    async close() {
      await ca.stop();
      await db?.drop();
    },
  });
}

export async function startCaProcess(options: { dataDir: string; databaseUrl?: string | undefined; env?: Record<string, string | undefined> }): Promise<CaProcess> {
  const [http, tls] = [await freePort(), await freePort()];
  const env = { CAIRN_DATA_DIR: options.dataDir, DATABASE_URL: options.databaseUrl, CAIRN_ADMIN_TOKEN: undefined, CAIRN_SERVER: undefined, CAIRN_LOG_LEVEL: 'warn', ...options.env };
  let current: Spawned | undefined;
  const start = async (): Promise<void> => {
    const p = spawnCairn(['ca', 'start', '--listen', `127.0.0.1:${http}`, '--tls-listen', `127.0.0.1:${tls}`], env);
    current = p;
    await p.waitFor(/listening on/, 60_000);
  };
  await start();
  const adminToken = (): string => env.CAIRN_ADMIN_TOKEN ?? readFileSync(join(options.dataDir, 'admin-token'), 'utf8').trim();
  return {
    httpUrl: `http://127.0.0.1:${http}`,
    tlsUrl: `https://127.0.0.1:${tls}`,
    get process() {
      return current!;
    },
    async admin<T>(path: string, body?: unknown) {
      const res = await fetch(`http://127.0.0.1:${http}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${adminToken()}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as T };
    },
    async kill() {
      current?.child.kill('SIGKILL');
      await current?.stop();
    },
    start,
    async stop() {
      await current?.stop();
    },
  };
}

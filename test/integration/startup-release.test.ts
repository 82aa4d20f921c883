import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { CaStartError, startCa, type CaConfig } from '../../ca/main.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { capturingLogger } from '../support/logs.js';

/**
 * A start-up that fails halfway closes what it had opened, newest first: listeners, the rotation
 * loop, the NOTIFY listener, the issuance worker threads, the database pool. What keeps a Node
 * process alive is what getActiveResourcesInfo() lists; on PostgreSQL the server also shows whether
 * any connection was left behind.
 */
describe(`a failed CA start-up releases everything it opened (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-release-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  async function config(extra: Partial<CaConfig> = {}): Promise<CaConfig & { dbName?: string }> {
    const dataDir = join(dir, `ca-${++n}`);
    if (storeKind() !== 'postgres') return { dataDir, host: '127.0.0.1', port: 0, tlsPort: 0, ...extra };
    const db = await createPgDatabase();
    cleanups.push(db.drop);
    return { dataDir, databaseUrl: db.url, dbName: new URL(db.url).pathname.slice(1), host: '127.0.0.1', port: 0, tlsPort: 0, ...extra };
  }

  async function holdPort(): Promise<number> {
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    return (server.address() as { port: number }).port;
  }

  /** Handles and threads that keep the process alive, by kind. */
  const resources = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
    return out;
  };

  async function connectionsTo(dbName: string | undefined): Promise<number> {
    if (!dbName) return 0;
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    try {
      const res = await admin.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1', [dbName]);
      return Number(res.rows[0]!.n);
    } finally {
      await admin.end();
    }
  }

  async function expectReleased(failing: () => Promise<unknown>, message: RegExp, dbName: string | undefined): Promise<void> {
    await new Promise((r) => setTimeout(r, 50));
    const before = resources();
    const err = await failing().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CaStartError);
    expect((err as Error).message).toMatch(message);
    await new Promise((r) => setTimeout(r, 200)); // closed sockets leave the handle list on the next tick
    const after = resources();
    for (const kind of ['TCPServerWrap', 'TCPSocketWrap', 'TCPWrap', 'MessagePort', 'Timeout']) {
      expect(after[kind] ?? 0, `${kind} left open`).toBeLessThanOrEqual(before[kind] ?? 0);
    }
    expect(await connectionsTo(dbName)).toBe(0);
  }

  it('a taken HTTP port', { timeout: 120_000 }, async () => {
    const c = await config({ port: await holdPort() });
    await expectReleased(() => startCa(c, { logger: capturingLogger().logger }), /\(--listen\): the address is already in use/, c.dbName);
  });

  it('a taken TLS port, after the HTTP listener was bound (and is free again)', { timeout: 120_000 }, async () => {
    const http = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
    const c = await config({ port: http, tlsPort: await holdPort() });
    await expectReleased(() => startCa(c, { logger: capturingLogger().logger }), /\(--tls-listen\): the address is already in use/, c.dbName);
    // the HTTP port it had bound is released
    await new Promise<void>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(http, '127.0.0.1', () => s.close(() => resolve()));
    });
  });

  it('a wrong key-encryption key', { timeout: 120_000 }, async () => {
    const right = join(dir, 'kek-right');
    const wrong = join(dir, 'kek-wrong');
    writeFileSync(right, randomBytes(32).toString('base64'), { mode: 0o600 });
    writeFileSync(wrong, randomBytes(32).toString('base64'), { mode: 0o600 });
    const c = await config({ kekFile: right });
    await (await startCa(c, { logger: capturingLogger().logger })).close();
    await expectReleased(() => startCa({ ...c, kekFile: wrong }, { logger: capturingLogger().logger }), /does not open the keys stored in this database/, c.dbName);
  });
});

import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openEmbedded } from '../../ca/db/embedded.js';
import { latestVersion, migrate } from '../../ca/db/migrate.js';
import { openPostgres } from '../../ca/db/pg.js';
import { startCa } from '../../ca/main.js';
import { cairnVersion } from '../../lib/version.js';
import { createPgDatabase, migrations, storeKind } from '../support/db.js';
import { capturingLogger } from '../support/logs.js';
import { freePort, spawnCairn } from '../support/processes.js';

/**
 * A CA (`cairn ca start`, `cairn up`) that cannot start must say why in one `error:` line and exit
 * non-zero, releasing what it opened: before, a taken port or a wrong KEK left it hanging forever
 * (under systemd: "active", nothing listening). Real processes, on the store under test.
 */
describe(`start-up failures exit with one error line (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-startfail-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  /** A fresh data dir and, on PostgreSQL, a fresh database of its own. */
  async function store(): Promise<{ dataDir: string; databaseUrl: string | undefined }> {
    const dataDir = join(dir, `ca-${++n}`);
    if (storeKind() !== 'postgres') return { dataDir, databaseUrl: undefined };
    const db = await createPgDatabase();
    cleanups.push(db.drop);
    return { dataDir, databaseUrl: db.url };
  }

  async function holdPort(): Promise<{ port: number; server: Server }> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    return { port: (server.address() as { port: number }).port, server };
  }

  /**
   * Runs the CLI to its exit (which must come: a hang fails the test) and returns what it said: its
   * `error:` lines, and every stderr line that is not a log record (logs share stderr, as JSON lines
   * here since stderr is not a terminal).
   */
  async function run(args: string[], env: Record<string, string | undefined>): Promise<{ status: number | null; errors: string[]; said: string[]; stderr: string }> {
    const p = spawnCairn(args, { CAIRN_ADMIN_TOKEN: undefined, CAIRN_SERVER: undefined, CAIRN_TRUST_DOMAIN: undefined, CAIRN_KEK_FILE: undefined, ...env });
    const hung = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 90_000).unref());
    const outcome = await Promise.race([p.exited, hung]);
    if (outcome === 'hung') {
      p.child.kill('SIGKILL');
      throw new Error(`the process did not exit; stderr:\n${p.stderr()}`);
    }
    const lines = p.stderr().split('\n').filter(Boolean);
    return { status: outcome, errors: lines.filter((l) => l.startsWith('error:')), said: lines.filter((l) => !l.startsWith('{')), stderr: p.stderr() };
  }

  const caStart = (s: { dataDir: string; databaseUrl: string | undefined }, http: number, tls: number, extra: string[] = []) =>
    run(['ca', 'start', '--data-dir', s.dataDir, '--listen', `127.0.0.1:${http}`, '--tls-listen', `127.0.0.1:${tls}`, ...extra], { DATABASE_URL: s.databaseUrl });

  it('a taken HTTP port: one error line naming the address and --listen, exit 1', { timeout: 120_000 }, async () => {
    const { port } = await holdPort();
    const r = await caStart(await store(), port, 0);
    expect(r.errors).toEqual([`error: cannot listen on 127.0.0.1:${port} (--listen): the address is already in use`]);
    expect(r.said).toHaveLength(1);
    expect(r.status).toBe(1);
  });

  it('a taken TLS port (the HTTP listener already bound): one error line naming --tls-listen, exit 1', { timeout: 120_000 }, async () => {
    const { port } = await holdPort();
    const r = await caStart(await store(), 0, port);
    expect(r.errors).toEqual([`error: cannot listen on 127.0.0.1:${port} (--tls-listen): the address is already in use`]);
    expect(r.said).toHaveLength(1);
    expect(r.status).toBe(1);
  });

  it('`cairn up` with a taken port: one error line, exit 1', { timeout: 120_000 }, async () => {
    const { port } = await holdPort();
    const s = await store();
    const r = await run(['up', '--data-dir', s.dataDir, '--listen', `127.0.0.1:${port}`, '--tls-listen', '127.0.0.1:0'], { DATABASE_URL: s.databaseUrl });
    expect(r.errors).toEqual([`error: cannot listen on 127.0.0.1:${port} (--listen): the address is already in use`]);
    expect(r.status).toBe(1);
  });

  it('a wrong key-encryption key: one error line naming the KEK file, exit 1', { timeout: 120_000 }, async () => {
    const s = await store();
    const right = join(dir, `kek-right-${n}`);
    const wrong = join(dir, `kek-wrong-${n}`);
    writeFileSync(right, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    writeFileSync(wrong, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    // The database's keys sealed with the right KEK (as a first start leaves them).
    const ca = await startCa({ dataDir: s.dataDir, databaseUrl: s.databaseUrl, host: '127.0.0.1', port: 0, tlsPort: 0, kekFile: right }, { logger: capturingLogger().logger });
    await ca.close();
    const r = await caStart(s, 0, 0, ['--kek-file', wrong]);
    expect(r.errors).toEqual([`error: the key-encryption key in ${wrong} does not open the keys stored in this database: every replica of a database needs the KEK file it was created with, or after cairn kek rotate the new one (--kek-file / CAIRN_KEK_FILE)`]);
    expect(r.status).toBe(1);
  });

  it('an unreachable PostgreSQL: one error line naming where (not the password), exit 1', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const r = await caStart({ dataDir: join(dir, 'unreachable'), databaseUrl: `postgres://cairn:s3cret-pw@127.0.0.1:${port}/cairn` }, 0, 0);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(new RegExp(`^error: cannot use PostgreSQL at 127\\.0\\.0\\.1:${port}/cairn \\(--database-url / DATABASE_URL\\): .*ECONNREFUSED`));
    expect(r.stderr).not.toContain('s3cret-pw');
    expect(r.status).toBe(1);
  });

  it('a schema newer than this version knows (version 99 inserted): refuses, naming both versions, exit 1', { timeout: 120_000 }, async () => {
    const s = await store();
    const db = s.databaseUrl ? openPostgres({ connectionString: s.databaseUrl }) : await openEmbedded(join(s.dataDir, 'pgdata'));
    try {
      await migrate(db, migrations());
      await db.query(`INSERT INTO schema_migrations (version, name) VALUES (99, 'from_the_future')`);
    } finally {
      await db.close();
    }
    const r = await caStart(s, 0, 0);
    const known = latestVersion(migrations());
    expect(r.errors).toEqual([
      `error: the database schema is at version 99, newer than this Cairn (${cairnVersion()}) knows (${known}), and migration 99 (from_the_future) is not backward compatible: run a Cairn that knows schema version 99`,
    ]);
    expect(r.status).toBe(1);
  });

  it('an invalid trust domain for `cairn up` is refused before the store is touched: exit 2, nothing listening or created', { timeout: 60_000 }, async () => {
    const s = await store();
    const r = await run(['up', '--data-dir', s.dataDir, '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'], { DATABASE_URL: s.databaseUrl, CAIRN_TRUST_DOMAIN: 'Example.org' });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/^error: CAIRN_TRUST_DOMAIN: "Example\.org" is not a trust domain name: .*lowercase/);
    expect(r.status).toBe(2);
    expect(existsSync(join(s.dataDir, 'pgdata'))).toBe(false);
    expect(existsSync(join(s.dataDir, 'kek'))).toBe(false);
  });

  it.each([
    ['short', /^error: CAIRN_ADMIN_TOKEN must hold at least 32 characters/],
    ['cairn-admin.' + 'x'.repeat(30) + ' with a space', /^error: CAIRN_ADMIN_TOKEN must hold at most 512 printable ASCII characters without spaces/],
    ['cairn-admin.' + 'x'.repeat(520), /^error: CAIRN_ADMIN_TOKEN must hold at most 512 printable ASCII characters/],
  ])('a configured admin token the API could never accept (%#) is refused before the store is touched: one error line, exit 2', { timeout: 60_000 }, async (token, message) => {
    const dataDir = join(dir, `config-${++n}`);
    const r = await run(['ca', 'start', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'], { DATABASE_URL: undefined, CAIRN_LISTEN: undefined, CAIRN_ADMIN_TOKEN: token });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(message);
    expect(r.status).toBe(2);
    expect(existsSync(dataDir)).toBe(false);
  });

  it.each([
    [['--listen', '127.0.0.1:99999'], /^error: --listen: port 99999 is out of range/],
    [['--listen', 'localhost'], /^error: --listen must be HOST:PORT/],
    [['--public-url', 'ftp://ca.example'], /^error: --public-url must use http or https/],
    [['--tls-public-url', 'http://ca.example:8443'], /^error: --tls-public-url must use https/],
    [['--kek-file', '/nonexistent/kek'], /^error: --kek-file: cannot read \/nonexistent\/kek \(no such file\)/],
    [['--database-url', 'mysql://db/x'], /^error: --database-url must be a postgres:\/\/ or postgresql:\/\/ URL/],
    [['--tls-san', 'not a name'], /^error: --tls-san: "not a name" is not a DNS name or an IP address/],
  ])('configuration %j is refused before anything is opened: one error line, exit 2', { timeout: 60_000 }, async (flags, message) => {
    const dataDir = join(dir, `config-${++n}`);
    const r = await run(['ca', 'start', '--data-dir', dataDir, ...flags], { DATABASE_URL: undefined, CAIRN_LISTEN: undefined });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(message);
    expect(r.status).toBe(2);
    expect(existsSync(dataDir)).toBe(false);
  });
});

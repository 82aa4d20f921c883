import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { latestVersion } from '../../ca/db/migrate.js';
import { startCa } from '../../ca/main.js';
import { packageRoot } from '../../lib/paths.js';
import { cairnVersion } from '../../lib/version.js';
import { createPgDatabase, migrations, storeKind } from '../support/db.js';
import { capturingLogger } from '../support/logs.js';
import { freePort, runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';

const KNOWN = latestVersion(migrations());
const VERSION = cairnVersion();

/**
 * Upgrades: `cairn migrate` applies and exits; `--no-migrate` (CAIRN_NO_MIGRATE=1) never applies and
 * refuses a schema it cannot serve; a replica refuses a schema newer than it knows unless every newer
 * migration is expand-only (recorded in the database, so replicas that never saw the file know).
 */
describe(`upgrades: cairn migrate, --no-migrate, schema versions (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-upgrade-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  let n = 0;
  async function store(): Promise<{ dataDir: string; databaseUrl: string | undefined }> {
    const dataDir = join(dir, `s-${++n}`);
    if (storeKind() !== 'postgres') return { dataDir, databaseUrl: undefined };
    const db = await createPgDatabase();
    cleanups.push(db.drop);
    return { dataDir, databaseUrl: db.url };
  }
  const env = (s: { databaseUrl: string | undefined }, extra: Record<string, string | undefined> = {}) => ({
    DATABASE_URL: s.databaseUrl, CAIRN_NO_MIGRATE: undefined, CAIRN_ADMIN_TOKEN: undefined, CAIRN_SERVER: undefined, CAIRN_KEK_FILE: undefined, ...extra,
  });
  const until = async (p: Spawned): Promise<{ status: number | null; errors: string[] }> => {
    const hung = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 90_000).unref());
    const status = await Promise.race([p.exited, hung]);
    if (status === 'hung') {
      p.child.kill('SIGKILL');
      throw new Error(`did not exit: ${p.stderr()}`);
    }
    return { status, errors: p.stderr().split('\n').filter((l) => l.startsWith('error:')) };
  };

  it('`ca start --no-migrate` (or CAIRN_NO_MIGRATE=1) refuses an unmigrated database; `cairn migrate` applies and says what; then --no-migrate starts', { timeout: 300_000 }, async () => {
    const s = await store();
    const args = ['ca', 'start', '--data-dir', s.dataDir, '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'];
    const refusal = `error: the database schema is at version 0 but this Cairn (${VERSION}) needs version ${KNOWN}: run \`cairn migrate\` with the same database settings (or start without --no-migrate)`;
    const flag = await until(spawnCairn([...args, '--no-migrate'], env(s)));
    expect(flag).toEqual({ status: 1, errors: [refusal] });
    const fromEnv = await until(spawnCairn(args, env(s, { CAIRN_NO_MIGRATE: '1' })));
    expect(fromEnv).toEqual({ status: 1, errors: [refusal] });

    const first = await runCairnAsync(['migrate', '--data-dir', s.dataDir], env(s));
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    const lines = first.stdout.trim().split('\n');
    expect(lines.slice(0, -1)).toEqual(migrations().map((m) => `applied ${String(m.version).padStart(4, '0')}_${m.name}`));
    expect(lines.at(-1)).toMatch(new RegExp(`migrated to schema version ${KNOWN} \\(Cairn ${VERSION.replace(/\./g, '\\.')}\\)$`));
    const again = await runCairnAsync(['migrate', '--data-dir', s.dataDir], env(s));
    expect(again.status).toBe(0);
    expect(again.stdout.trim()).toMatch(new RegExp(`is at schema version ${KNOWN}; nothing to apply`));

    const ca = spawnCairn([...args, '--no-migrate'], env(s));
    cleanups.push(() => ca.stop());
    await ca.waitFor(/listening on/, 90_000);
    expect(ca.stdout()).toContain(`Cairn ${VERSION} CA listening on`); // its banner, on stdout
    expect(ca.stderr()).not.toContain('database migrated'); // its logs, on stderr
    const url = /listening on (http:\/\/[^ ]+)/.exec(ca.stdout())![1]!;
    expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ status: 'ok', version: VERSION });
    const check = await runCairnAsync(['ca', 'healthcheck', '--server', url], { CAIRN_SERVER: undefined });
    expect(check).toMatchObject({ status: 0, stdout: `the CA at ${url} is ready\n`, stderr: '' });
    expect(await ca.stop()).toBe(0);
  });

  it('a running CA stops reporting ready when a schema it cannot serve appears, and says why', { timeout: 180_000 }, async () => {
    const s = await store();
    const ca = await startCa({ ...s, host: '127.0.0.1', port: 0, tlsPort: 0 }, { logger: capturingLogger().logger });
    try {
      expect((await fetch(`${ca.url}/readyz`)).status).toBe(200);
      await ca.db.query(`INSERT INTO schema_migrations (version, name) VALUES (99, 'from_the_future')`);
      const res = await fetch(`${ca.url}/readyz`);
      expect(res.status).toBe(503);
      const reason = `the database schema is at version 99, newer than this Cairn (${VERSION}) knows (${KNOWN}), and migration 99 (from_the_future) is not backward compatible: run a Cairn that knows schema version 99`;
      expect(await res.json()).toEqual({ status: 'not ready', reason });
      const check = await runCairnAsync(['ca', 'healthcheck', '--server', ca.url], { CAIRN_SERVER: undefined });
      expect(check.status).toBe(1);
      expect(check.stderr).toBe(`error: the CA at ${ca.url} is not ready: ${reason}\n`);
      // liveness is not readiness: the process is alive, and says its version
      expect(await (await fetch(`${ca.url}/healthz`)).json()).toEqual({ status: 'ok', version: VERSION });
    } finally {
      await ca.close();
    }
    const unreachable = await runCairnAsync(['ca', 'healthcheck', '--server', ca.url], { CAIRN_SERVER: undefined });
    expect(unreachable.status).toBe(1);
    expect(unreachable.stderr).toMatch(new RegExp(`^error: cannot reach the CA at ${ca.url.replace(/\./g, '\\.')}: ECONNREFUSED\\n$`));
  });

  describe.runIf(storeKind() === 'postgres')('on one PostgreSQL', () => {
    it('the runtime user needs no DDL rights: a Job migrates as the owner, replicas run with --no-migrate (or on a current schema) as a DML-only user', { timeout: 240_000 }, async () => {
      const s = await store();
      const owner = await runCairnAsync(['migrate'], env(s));
      expect(owner.status).toBe(0);
      const name = new URL(s.databaseUrl!).pathname.slice(1);
      const role = `cairn_rt_${randomBytes(4).toString('hex')}`;
      const admin = new pg.Client({ connectionString: s.databaseUrl });
      await admin.connect();
      try {
        await admin.query(`CREATE ROLE ${role} LOGIN`);
        await admin.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
        await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
        await admin.query(`GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
      } finally {
        await admin.end();
      }
      cleanups.push(async () => {
        const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
        await c.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
        await c.end();
      });
      const runtimeUrl = new URL(s.databaseUrl!);
      runtimeUrl.username = role;
      for (const extra of [['--no-migrate'], []]) {
        const ca = spawnCairn(['ca', 'start', '--data-dir', s.dataDir, '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0', ...extra], env({ databaseUrl: runtimeUrl.toString() }));
        cleanups.push(() => ca.stop());
        await ca.waitFor(/listening on/, 90_000);
        const url = /listening on (http:\/\/[^ ]+)/.exec(ca.stdout())![1]!;
        expect((await fetch(`${url}/readyz`)).status).toBe(200);
        // and it works: a trust domain (keys sealed, rows written) and a token
        const token = readFileSync(join(s.dataDir, 'admin-token'), 'utf8').trim();
        const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
        const td = `rt${n}-${extra.length}.test`;
        expect((await fetch(`${url}/v1/trust-domains`, { method: 'POST', headers, body: JSON.stringify({ name: td }) })).status).toBe(201);
        expect((await fetch(`${url}/v1/tokens`, { method: 'POST', headers, body: JSON.stringify({ trustDomain: td }) })).status).toBe(201);
        expect(await ca.stop()).toBe(0);
      }
    });

    /**
     * Three installations of this code that differ only in the migrations they ship, as three releases
     * would: "old" knows the real ones, "new" one more that is expand-only, "newest" another that is not.
     */
    function release(name: string, extra: readonly { file: string; sql: string }[]): string {
      const root = join(dir, name);
      mkdirSync(root, { recursive: true });
      cpSync(join(packageRoot(), 'dist'), join(root, 'dist'), { recursive: true });
      cpSync(join(packageRoot(), 'migrations'), join(root, 'migrations'), { recursive: true });
      cpSync(join(packageRoot(), 'package.json'), join(root, 'package.json'));
      symlinkSync(join(packageRoot(), 'node_modules'), join(root, 'node_modules'));
      symlinkSync(join(packageRoot(), 'build'), join(root, 'build')); // the native addons, as `npm ci` builds them
      for (const m of extra) writeFileSync(join(root, 'migrations', m.file), m.sql);
      return join(root, 'dist', 'cli', 'main.js');
    }

    it('an old and a new replica on one database across an expand-only migration, then a contract migration retires the old one', { timeout: 300_000 }, async () => {
      const s = await store();
      const expand = { file: `${String(KNOWN + 1).padStart(4, '0')}_upgrade_probe.sql`, sql: '-- a new table: older replicas do not read it\n-- cairn:expand-only\nCREATE TABLE upgrade_probe (id integer PRIMARY KEY, note text);\n' };
      const contract = { file: `${String(KNOWN + 2).padStart(4, '0')}_upgrade_probe_drop_note.sql`, sql: '-- removes a column: replicas that knew it must be gone\nALTER TABLE upgrade_probe DROP COLUMN note;\n' };
      const oldCli = release('old', []);
      const newCli = release('new', [expand]);
      const newestCli = release('newest', [expand, contract]);
      const kek = join(dir, 'shared-kek');
      writeFileSync(kek, randomBytes(32).toString('base64'), { mode: 0o600 });
      const shared = env(s, { CAIRN_KEK_FILE: kek, CAIRN_ADMIN_TOKEN: `cairn-admin-upgrade-test-${randomBytes(16).toString('hex')}` });
      const admin = (url: string, path: string, body: unknown) =>
        fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${shared.CAIRN_ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const replica = async (cli: string, name: string): Promise<{ p: Spawned; url: string }> => {
        const port = await freePort();
        const p = spawnCairn(['ca', 'start', '--data-dir', join(s.dataDir, name), '--listen', `127.0.0.1:${port}`, '--tls-listen', '127.0.0.1:0'], shared, [], { cli });
        cleanups.push(() => p.stop());
        await p.waitFor(/listening on/, 90_000);
        return { p, url: `http://127.0.0.1:${port}` };
      };
      const ready = async (url: string) => {
        const res = await fetch(`${url}/readyz`);
        const { reason } = (await res.json()) as { reason?: string };
        return reason === undefined ? { status: res.status } : { status: res.status, reason };
      };

      const old = await replica(oldCli, 'old');
      expect((await admin(old.url, '/v1/trust-domains', { name: 'roll.test' })).status).toBe(201);

      const fresh = await replica(newCli, 'new'); // migrates to KNOWN + 1 at start
      expect(fresh.p.stderr()).toMatch(new RegExp(`"versions":\\[${KNOWN + 1}\\]`));
      expect(await ready(fresh.url)).toEqual({ status: 200 });
      // the old replica keeps serving on the newer schema, reads and writes
      expect(await ready(old.url)).toEqual({ status: 200 });
      expect((await admin(old.url, '/v1/tokens', { trustDomain: 'roll.test' })).status).toBe(201);
      expect((await admin(fresh.url, '/v1/tokens', { trustDomain: 'roll.test' })).status).toBe(201);
      // and an old replica restarted now (a rollout in progress) starts on it, saying so
      expect(await old.p.stop()).toBe(0);
      const oldAgain = await replica(oldCli, 'old');
      expect(oldAgain.p.stderr()).toContain('"event":"db.schema_newer"');
      expect(await ready(oldAgain.url)).toEqual({ status: 200 });

      // The next release drops something: its Job migrates, and replicas that do not know that
      // migration stop reporting ready, naming both versions.
      const job = await runCairnAsync(['migrate'], shared);
      expect(job.status).toBe(0); // the old release's Job run again: nothing to apply, and the schema is one it can serve
      expect(job.stdout).toContain('nothing to apply');
      const newestJob = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const p = spawnCairn(['migrate'], shared, [], { cli: newestCli });
        void p.exited.then((status) => resolve({ status, stdout: p.stdout(), stderr: p.stderr() }));
      });
      expect(newestJob.status).toBe(0);
      expect(newestJob.stdout).toContain(`applied ${contract.file.slice(0, -4)}`);
      const retired = `the database schema is at version ${KNOWN + 2}, newer than this Cairn (${VERSION}) knows (${KNOWN}), and migration ${KNOWN + 2} (upgrade_probe_drop_note) is not backward compatible: run a Cairn that knows schema version ${KNOWN + 2}`;
      expect(await ready(oldAgain.url)).toEqual({ status: 503, reason: retired });
      expect((await ready(fresh.url)).status).toBe(503);
      const newest = await replica(newestCli, 'newest');
      expect(await ready(newest.url)).toEqual({ status: 200 });
      // an old replica started now refuses, and so does `cairn migrate` of the old release
      const refused = spawnCairn(['ca', 'start', '--data-dir', join(s.dataDir, 'old'), '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'], shared, [], { cli: oldCli });
      expect(await until(refused)).toEqual({ status: 1, errors: [`error: ${retired}`] });
      const oldJob = await runCairnAsync(['migrate'], shared);
      expect(oldJob.status).toBe(1);
      expect(oldJob.stderr).toBe(`error: ${retired}\n`);
    });
  });
});

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCa, type CaHandle } from '../../ca/main.js';
import { callAs, createAdmin, recordOf } from '../support/admins.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { FakeClock } from '../support/clock.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { capturingLogger } from '../support/logs.js';

describe(`named admin credentials (${storeKind()} store)`, { timeout: 120_000 }, () => {
  let ca: TestCa;
  // the real time, moved by hand: expiry and `last used` without sleeping
  const clock = new FakeClock(new Date());
  beforeAll(async () => {
    ca = await startTestCa({ clock });
  }, 120_000);
  afterAll(() => ca.close());

  const lastUsed = async (name: string): Promise<string | null> =>
    (await callAs(ca, ca.adminToken, 'GET', '/v1/admins')).body.admins.find((a: { name: string }) => a.name === name).lastUsedAt;

  it('creates a credential whose secret is answered once and stored only as a hash', async () => {
    const res = await callAs(ca, ca.adminToken, 'POST', '/v1/admins', { name: 'ci', role: 'operator', trustDomains: ['b.test', 'a.test', 'a.test'], ttlSeconds: 3600 });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ name: 'ci', role: 'operator', trustDomains: ['a.test', 'b.test'], createdBy: 'bootstrap', lastUsedAt: null, expiresAt: new Date(clock.now().getTime() + 3600_000).toISOString() });
    expect(res.body.token).toMatch(/^cairn-admin\.[A-Za-z0-9]{43}$/);
    const rows = await ca.handle.db.query<Record<string, unknown>>('SELECT * FROM admin_tokens WHERE name = $1', ['ci']);
    expect(JSON.stringify(rows.rows, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v))).not.toContain(res.body.token.slice(12));
    const list = await callAs(ca, res.body.token, 'GET', '/v1/entries');
    expect(list.status).toBe(200);
    expect(JSON.stringify((await callAs(ca, ca.adminToken, 'GET', '/v1/admins')).body)).not.toContain(res.body.token);
  });

  it('refuses bad and reserved names, duplicates, unknown roles and bad scopes with clear codes', async () => {
    const cases: [unknown, number, string][] = [
      [{ name: 'bootstrap', role: 'viewer' }, 400, 'invalid_request'],
      [{ name: 'configured', role: 'viewer' }, 400, 'invalid_request'],
      [{ name: 'configured-0123456789ab', role: 'viewer' }, 400, 'invalid_request'],
      [{ name: 'Upper', role: 'viewer' }, 400, 'invalid_request'],
      [{ name: 'spiffe://a.test/x', role: 'viewer' }, 400, 'invalid_request'],
      [{ name: 'x'.repeat(64), role: 'viewer' }, 400, 'invalid_request'],
      [{ name: 'ok', role: 'root' }, 400, 'invalid_request'],
      [{ name: 'ok', role: 'viewer', trustDomains: [] }, 400, 'invalid_request'],
      [{ name: 'ok', role: 'viewer', trustDomains: ['Not A Domain'] }, 400, 'invalid_trust_domain'],
      [{ name: 'ok', role: 'viewer', ttlSeconds: 10 }, 400, 'invalid_request'],
      [{ name: 'ok', role: 'viewer', secret: 'mine' }, 400, 'invalid_request'],
      [{ name: 'ci', role: 'viewer' }, 409, 'admin_exists'],
    ];
    for (const [body, status, code] of cases) {
      const res = await callAs(ca, ca.adminToken, 'POST', '/v1/admins', body);
      expect([res.status, res.body.code], JSON.stringify(body)).toEqual([status, code]);
    }
    const gone = await callAs(ca, ca.adminToken, 'DELETE', '/v1/admins/nobody');
    expect([gone.status, gone.body.code]).toEqual([404, 'admin_not_found']);
  });

  it('an expired credential gets 401, recorded with its name', async () => {
    const token = await createAdmin(ca, { name: 'short', role: 'viewer', ttlSeconds: 120 });
    expect((await callAs(ca, token, 'GET', '/v1/trust-domains')).status).toBe(200);
    clock.advance(119);
    expect((await callAs(ca, token, 'GET', '/v1/trust-domains')).status).toBe(200);
    clock.advance(1);
    const res = await callAs(ca, token, 'GET', '/v1/trust-domains');
    expect([res.status, res.body.code]).toEqual([401, 'unauthenticated']);
    expect(res.body.message).toContain('expired');
    const record = await recordOf(ca, 'admin.auth_failed', (r) => r.actor === 'short');
    expect(record).toMatchObject({ actor: 'short', credential: 'token', action: 'admin.authenticate', outcome: 'failure', status: 401 });
    // still listed (and revocable) until revoked
    expect((await callAs(ca, ca.adminToken, 'DELETE', '/v1/admins/short')).status).toBe(204);
  });

  it('a revoked credential gets 401 at once', async () => {
    const token = await createAdmin(ca, { name: 'temp', role: 'admin' });
    expect((await callAs(ca, token, 'GET', '/v1/admins')).status).toBe(200);
    expect((await callAs(ca, ca.adminToken, 'DELETE', '/v1/admins/temp')).status).toBe(204);
    for (const path of ['/v1/admins', '/v1/trust-domains', '/v1/entries']) {
      const res = await callAs(ca, token, 'GET', path);
      expect([res.status, res.body.code]).toEqual([401, 'unauthenticated']);
    }
    // a credential may revoke itself; its next request fails
    const self = await createAdmin(ca, { name: 'self', role: 'admin' });
    expect((await callAs(ca, self, 'DELETE', '/v1/admins/self')).status).toBe(204);
    expect((await callAs(ca, self, 'GET', '/v1/admins')).status).toBe(401);
  });

  it('records `last used` at most once a minute per credential', async () => {
    const token = await createAdmin(ca, { name: 'busy', role: 'viewer' });
    expect(await lastUsed('busy')).toBeNull();
    // count the statements that write `last used`, as the store sends them
    const db = ca.handle.db;
    const query = db.query.bind(db);
    let writes = 0;
    db.query = ((sql: string, params?: readonly unknown[]) => {
      if (/UPDATE admin_tokens SET last_used_at/.test(sql)) writes++;
      return query(sql, params);
    }) as typeof db.query;
    const t0 = clock.now().toISOString();
    try {
      await callAs(ca, token, 'GET', '/v1/trust-domains');
      expect(await lastUsed('busy')).toBe(t0);
      for (let i = 0; i < 5; i++) {
        clock.advance(10);
        await callAs(ca, token, 'GET', '/v1/trust-domains');
      }
      expect(await lastUsed('busy')).toBe(t0); // 50 s and 5 requests later: not rewritten
      expect(writes).toBe(1);
    } finally {
      db.query = query;
    }
    clock.advance(11);
    const t1 = clock.now().toISOString();
    await callAs(ca, token, 'GET', '/v1/trust-domains');
    expect(await lastUsed('busy')).toBe(t1);
  });
});

describe(`configured and bootstrap credentials (${storeKind()} store)`, { timeout: 300_000 }, () => {
  const T1 = 'cairn-admin.' + 'A1'.repeat(20) + 'xyz';
  const T2 = 'cairn-admin.' + 'B2'.repeat(20) + 'xyz';
  let dataDir: string;
  let pg: { url: string; drop: () => Promise<void> } | undefined;
  const start = async (adminToken: string | undefined): Promise<CaHandle> => {
    const { logger } = capturingLogger();
    return startCa({ dataDir, databaseUrl: pg?.url, host: '127.0.0.1', port: 0, tlsPort: 0, adminToken, rotationIntervalMs: 3_600_000 }, { logger });
  };
  const status = async (ca: CaHandle, token: string): Promise<number> => (await fetch(`${ca.url}/v1/trust-domains`, { headers: { authorization: `Bearer ${token}` } })).status;
  const names = async (ca: CaHandle): Promise<string[]> => (await ca.db.query<{ name: string }>('SELECT name FROM admin_tokens ORDER BY name')).rows.map((r) => r.name);

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'cairn-configured-'));
    pg = storeKind() === 'postgres' ? await createPgDatabase() : undefined;
  });
  afterAll(async () => {
    await pg?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('CAIRN_ADMIN_TOKEN makes no bootstrap credential, and each start replaces the previous configured one', async () => {
    let ca = await start(T1);
    try {
      expect(await names(ca)).toEqual(['configured']);
      expect(existsSync(join(dataDir, 'admin-token'))).toBe(false);
      expect(await status(ca, T1)).toBe(200);
      expect((await ca.db.query<{ role: string; trust_domains: unknown }>(`SELECT role, trust_domains FROM admin_tokens`)).rows[0]).toEqual({ role: 'admin', trust_domains: null });
    } finally {
      await ca.close();
    }
    ca = await start(T2);
    try {
      expect(await names(ca)).toEqual(['configured']);
      expect(await status(ca, T1)).toBe(401);
      expect(await status(ca, T2)).toBe(200);
      expect(existsSync(join(dataDir, 'admin-token'))).toBe(false);
      // a credential made through the API survives restarts; an earlier release's configured-<hash> rows do not
      await fetch(`${ca.url}/v1/admins`, { method: 'POST', headers: { authorization: `Bearer ${T2}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'keep', role: 'viewer' }) });
      await ca.db.query(`INSERT INTO admin_tokens (id, name, token_hash, created_at) VALUES ('legacy1', 'configured-0123456789ab', '\\x00', now())`);
    } finally {
      await ca.close();
    }
    ca = await start(T2);
    try {
      expect(await names(ca)).toEqual(['configured', 'keep']);
      expect(await status(ca, T2)).toBe(200);
    } finally {
      await ca.close();
    }
  });

  it('without a configured token, a CA whose store holds credentials makes no bootstrap credential; a configured token that is another credential\'s secret adds nothing', async () => {
    let ca = await start(undefined);
    try {
      expect(await names(ca)).toEqual(['configured', 'keep']);
      expect(existsSync(join(dataDir, 'admin-token'))).toBe(false);
      // the configured credential stays until revoked (replicas may still be configured with it)
      expect(await status(ca, T2)).toBe(200);
      expect((await fetch(`${ca.url}/v1/admins/configured`, { method: 'DELETE', headers: { authorization: `Bearer ${T2}` } })).status).toBe(204);
      expect(await status(ca, T2)).toBe(401);
      await ca.db.query(`DELETE FROM admin_tokens`);
    } finally {
      await ca.close();
    }
    // an empty store: the bootstrap credential, role admin, written to the data dir
    ca = await start(undefined);
    const bootstrap = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    try {
      expect(await names(ca)).toEqual(['bootstrap']);
      expect((await ca.db.query<{ role: string }>(`SELECT role FROM admin_tokens`)).rows[0]!.role).toBe('admin');
      expect(await status(ca, bootstrap)).toBe(200);
    } finally {
      await ca.close();
    }
    // replicas configured with the bootstrap secret: it keeps its name, no duplicate, no failure
    ca = await start(bootstrap);
    try {
      expect(await names(ca)).toEqual(['bootstrap']);
      expect(await status(ca, bootstrap)).toBe(200);
    } finally {
      await ca.close();
    }
    // short or unprintable configured tokens are refused at start
    await expect(start('short')).rejects.toThrow(/at least 32/);
    await expect(start('cairn-admin.' + 'x'.repeat(30) + ' with space')).rejects.toThrow(/printable/);
  });
});

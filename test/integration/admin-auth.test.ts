import { statSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { startCa } from '../../ca/main.js';
import { capturingLogger } from '../support/logs.js';
import { fetchPinnedAuthority, requestJson } from '../../lib/tls-client.js';
import { pemChain, redeem } from '../support/agent-client.js';

/** Routes anyone may call. Anything else must demand credentials; a new route cannot slip through. */
const PUBLIC_ROUTES = new Set([
  'GET /healthz',
  'GET /readyz',
  'GET /docs',
  'GET /docs/openapi.json',
  'GET /td/:trustDomain/bundle',
  'GET /td/:trustDomain/bundle.pem',
  'GET /td/:trustDomain/jwks',
  'GET /td/:trustDomain/.well-known/openid-configuration',
  'GET /td/:trustDomain/crl',
  'GET /td/:trustDomain/crl.pem',
  // public, but answered to loopback callers only (test/integration/metrics.test.ts)
  'GET /metrics',
]);

function concretePath(url: string): string {
  return url.replace(/:name|:trustDomain/g, 'example.org').replace(/:[a-zA-Z]+/g, 'x');
}

describe(`admin authentication (${storeKind()} store)`, { timeout: 120_000 }, () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa();
  }, 180_000);
  afterAll(() => ca.close());

  it('every registered route is public by allow-list or answers 401 without a token', async () => {
    expect(ca.app.routes.length).toBeGreaterThan(PUBLIC_ROUTES.size);
    for (const route of ca.app.routes) {
      const key = `${route.method} ${route.url}`;
      if (PUBLIC_ROUTES.has(key)) {
        expect(route.access, key).toBe('public');
        continue;
      }
      expect(route.access, key).toBe('admin');
      for (const headers of [{} as Record<string, string>, { authorization: 'Bearer cairn-admin.wrong' }, { authorization: 'Basic Zm9vOmJhcg==' }, { authorization: `Bearer ${ca.adminToken}x` }]) {
        const res = await fetch(ca.url + concretePath(route.url), {
          method: route.method,
          headers: { ...headers, 'content-type': 'application/json' },
          ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { body: '{}' }),
        });
        expect(res.status, `${key} with ${JSON.stringify(headers)}`).toBe(401);
        expect((await res.json()).code).toBe('unauthenticated');
      }
    }
  });

  it('on the TLS listener too: admin routes need the token, agent and device routes a client SVID, only redemption is open', async () => {
    const BOOTSTRAP = new Set(['POST /agent/v1/attest', 'POST /device/v1/redeem', 'POST /agent/v1/attest/k8s-psat', 'POST /agent/v1/attest/x509pop/challenge', 'POST /agent/v1/attest/x509pop']);
    const authority = await fetchPinnedAuthority(ca.tlsUrl, await ca.core.serverTls.pin());
    const accessSeen = new Set<string>();
    for (const route of ca.tlsApp.routes) {
      const key = `${route.method} ${route.url}`;
      accessSeen.add(route.access);
      if (PUBLIC_ROUTES.has(key)) {
        expect(route.access, key).toBe('public');
        continue;
      }
      if (BOOTSTRAP.has(key)) {
        expect(route.access, key).toBe('bootstrap');
        continue;
      }
      expect(['admin', 'agent'], key).toContain(route.access);
      const res = await requestJson<{ code: string }>(route.method, ca.tlsUrl + concretePath(route.url), route.method === 'GET' || route.method === 'DELETE' ? undefined : {}, { ca: authority });
      expect(res.status, key).toBe(401);
      expect(res.body.code, key).toBe('unauthenticated');
    }
    expect([...accessSeen].sort()).toEqual(['admin', 'agent', 'bootstrap', 'public']);
    // and the plain listener has no agent or bootstrap routes at all
    expect(ca.app.routes.filter((r) => r.access === 'agent' || r.access === 'bootstrap')).toEqual([]);
  });

  it('refuses every admin route to a node holding a valid agent SVID (an SVID is not an admin credential)', async () => {
    await ca.admin('/v1/trust-domains', { body: { name: 'svid-not-admin.test' } });
    const { token } = await (await ca.admin('/v1/tokens', { body: { trustDomain: 'svid-not-admin.test' } })).json();
    const { node } = await redeem(token);
    const authority = await fetchPinnedAuthority(ca.tlsUrl, await ca.core.serverTls.pin());
    const creds = { ca: authority, cert: pemChain(node!.svid), key: node!.keyPem };
    // the same credentials do open the agent API, so they are really presented
    expect((await requestJson('GET', `${ca.tlsUrl}/agent/v1/sync?revision=0`, undefined, creds)).status).toBe(200);
    const adminRoutes = ca.tlsApp.routes.filter((r) => r.access === 'admin');
    expect(adminRoutes.length).toBeGreaterThan(15);
    for (const route of adminRoutes) {
      const res = await requestJson<{ code: string }>(route.method, ca.tlsUrl + concretePath(route.url), route.method === 'GET' || route.method === 'DELETE' ? undefined : {}, creds);
      expect(res.status, `${route.method} ${route.url}`).toBe(401);
      expect(res.body.code).toBe('unauthenticated');
    }
  });

  it('serves an OpenAPI document generated from the route schemas', async () => {
    const doc = await (await fetch(`${ca.url}/docs`)).json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/trust-domains', '/v1/trust-domains/{name}', '/v1/x509-svids', '/v1/jwt-svids', '/td/{trustDomain}/bundle']));
    expect(doc.paths['/v1/trust-domains'].post.requestBody).toBeDefined();
    expect(doc.paths['/v1/trust-domains'].post.responses['201']).toBeDefined();
    expect(doc.paths['/v1/trust-domains'].post.security).toEqual([{ adminToken: [] }]);
    // named admin credentials, and each admin route says the role it needs
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/admins', '/v1/admins/{name}']));
    expect(doc.paths['/v1/admins'].post.responses['201'].content['application/json'].schema.properties.token).toBeDefined();
    expect(doc.paths['/v1/admins'].get.responses['200'].content['application/json'].schema.properties.admins.items.properties.token).toBeUndefined();
    expect(doc.paths['/v1/trust-domains'].post.description).toContain('Role: admin');
    expect(doc.paths['/v1/entries'].post.description).toContain('Role: operator');
    expect(doc.paths['/v1/entries'].get.description).toContain('Role: viewer');
  });

  it('never writes tokens or keys to the logs', async () => {
    await ca.admin('/v1/trust-domains', { body: { name: 'logs.test' } });
    const { token } = await (await ca.admin('/v1/jwt-svids', { body: { spiffeId: 'spiffe://logs.test/a', audience: ['x'] } })).json();
    const logs = ca.logs();
    expect(logs.length).toBeGreaterThan(100);
    expect(logs).not.toContain(ca.adminToken);
    expect(logs).not.toContain(ca.adminToken.slice(12));
    expect(logs).not.toContain(token);
    expect(logs).not.toMatch(/PRIVATE KEY/);
    expect(logs).toContain('"event":"jwt_svid.minted"');
  });
});

describe('bootstrap admin token', { timeout: 180_000 }, () => {
  it('is created once, written 0600 to the data dir, stored only as a hash, and works', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cairn-boot-'));
    const { logger, text } = capturingLogger();
    const databaseUrl = storeKind() === 'postgres' ? (await import('../support/db.js')).createPgDatabase() : undefined;
    const pgdb = databaseUrl ? await databaseUrl : undefined;
    try {
      const ca = await startCa({ dataDir, databaseUrl: pgdb?.url, host: '127.0.0.1', port: 0, tlsPort: 0 }, { logger });
      const file = join(dataDir, 'admin-token');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(join(dataDir, 'kek')).mode & 0o777).toBe(0o600);
      const token = readFileSync(file, 'utf8').trim();
      expect(token).toMatch(/^cairn-admin\.[A-Za-z0-9]{43}$/);
      const stored = await ca.db.query<{ token_hash: Uint8Array }>('SELECT token_hash FROM admin_tokens');
      expect(stored.rows).toHaveLength(1);
      expect(Buffer.from(stored.rows[0]!.token_hash).toString('utf8')).not.toContain(token);
      const ok = await fetch(`${ca.url}/v1/trust-domains`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(text()).not.toContain(token);
      await ca.close();
      // a second start reuses the database and does not mint another bootstrap token
      const again = await startCa({ dataDir, databaseUrl: pgdb?.url, host: '127.0.0.1', port: 0, tlsPort: 0 }, { logger });
      expect(readFileSync(file, 'utf8').trim()).toBe(token);
      expect((await again.db.query('SELECT 1 FROM admin_tokens')).rows).toHaveLength(1);
      await again.close();
    } finally {
      await pgdb?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

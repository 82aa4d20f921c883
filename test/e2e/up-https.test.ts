import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, customFetch, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgDatabase, storeKind } from '../support/db.js';
import { freePort, runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';

/** GET trusting only the test web root (the way an OIDC consumer with that root installed would). */
function get(url: string, ca: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer from ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

describe(`cairn up with an https_web bundle endpoint: OIDC over https (${storeKind()} store)`, () => {
  let dir: string;
  let up: Spawned;
  let env: Record<string, string | undefined>;
  let drop: (() => Promise<void>) | undefined;
  let root: string;
  let web: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-up-https-'));
    const pki = join(dir, 'pki');
    mkdirSync(pki);
    const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: pki, stdio: ['ignore', 'pipe', 'pipe'] });
    ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-subj', '/CN=test web root', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
    writeFileSync(join(pki, 'ext.cnf'), 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n');
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'web.key', '-out', 'web.csr', '-subj', '/CN=localhost');
    ossl('x509', '-req', '-in', 'web.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-CAcreateserial', '-out', 'web.pem', '-days', '1', '-extfile', 'ext.cnf');
    root = readFileSync(join(pki, 'root.pem'), 'utf8');
    let databaseUrl: string | undefined;
    if (storeKind() === 'postgres') ({ url: databaseUrl, drop } = await createPgDatabase());
    const dataDir = join(dir, 'data');
    env = { CAIRN_DATA_DIR: dataDir, DATABASE_URL: databaseUrl, CAIRN_SERVER: undefined, CAIRN_ADMIN_TOKEN: undefined };
    const port = await freePort();
    web = `https://localhost:${port}`;
    up = spawnCairn(['up', '--listen', `127.0.0.1:${await freePort()}`, '--tls-listen', '127.0.0.1:0', '--trust-domain', 'up-https.test',
      '--bundle-endpoint-listen', `127.0.0.1:${port}`, '--bundle-endpoint-url', web, '--bundle-endpoint-cert', join(pki, 'web.pem'), '--bundle-endpoint-key', join(pki, 'web.key')], env);
    await up.waitFor(/Press Ctrl-C to stop/, 180_000);
  }, 240_000);

  afterAll(async () => {
    await up?.stop();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it('endpoints.json reports the https issuer, discovery and JWKS; discovery over https names jwks_uri on the same host', async () => {
    const endpoints = JSON.parse(readFileSync(join(dir, 'data', 'endpoints.json'), 'utf8'));
    expect(endpoints).toMatchObject({ jwtIssuer: web, oidcDiscoveryUrl: `${web}/.well-known/openid-configuration`, jwksUrl: `${web}/jwks`, bundleEndpointUrl: web });
    expect(up.stdout()).toContain(`  OIDC discovery: ${web}/.well-known/openid-configuration`);
    const discovery = await get(endpoints.oidcDiscoveryUrl, root);
    expect(discovery.status).toBe(200);
    const doc = JSON.parse(discovery.body);
    expect(doc).toMatchObject({ issuer: web, jwks_uri: `${web}/jwks` });
    // the same document from the CA's plain listener points at the https issuer too
    expect(await (await fetch(`${endpoints.caUrl}/td/up-https.test/.well-known/openid-configuration`)).json()).toMatchObject({ issuer: web, jwks_uri: `${web}/jwks` });
    // the SPIFFE bundle at / of the same endpoint
    expect(JSON.parse((await get(`${web}/`, root)).body)).toMatchObject({ spiffe_sequence: expect.any(Number) });
    const shown = await runCairnAsync(['trust-domain', 'show', 'up-https.test', '--json'], env);
    expect(JSON.parse(shown.stdout)).toMatchObject({ bundleEndpointProfile: 'https_web', bundleEndpointUrl: web, bundleEndpointCert: 'web.pem', bundleEndpointKey: 'web.key', jwtIssuer: web });
  });

  it('a JWT-SVID from the CLI verifies with jose against the https jwks_uri (test root trusted)', async () => {
    const minted = await runCairnAsync(['jwt', 'mint', '--spiffe-id', 'spiffe://up-https.test/api', '--audience', 'sts.amazonaws.com'], env);
    expect(minted.status, minted.stderr).toBe(0);
    const jwks = createRemoteJWKSet(new URL(`${web}/jwks`), {
      [customFetch]: async (target: string) => {
        const r = await get(target, root);
        return new Response(r.body, { status: r.status, headers: { 'content-type': r.type } });
      },
    });
    const { payload } = await jwtVerify(minted.stdout.trim(), jwks, { issuer: web, audience: 'sts.amazonaws.com' });
    expect(payload.sub).toBe('spiffe://up-https.test/api');
  });
});

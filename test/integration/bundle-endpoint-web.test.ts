import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { createRemoteJWKSet, customFetch, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { freePort, runCairnAsync } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const TD = 'web-endpoint.test';
const HOME = 'web-home.test';

/** A test web PKI made by openssl: a root, and server certificates for localhost signed by it. */
function makePki(dir: string): void {
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-subj', '/CN=test web root', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  for (const name of ['a', 'b', 'outside']) {
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=localhost ${name}`);
    ossl('x509', '-req', '-in', `${name}.csr`, '-CA', 'root.pem', '-CAkey', 'root.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', 'ext.cnf');
  }
}

/** GET over TLS trusting only the test web root, host name checked as any web client does (no connection reuse). */
function get(url: string, root: string): Promise<{ status: number; body: string; peer: X509Certificate; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: root, agent: false }, (res) => {
      const peer = new X509Certificate((res.socket as TLSSocket).getPeerX509Certificate()!.raw);
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, peer, headers: res.headers }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer from ${url} in 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

describe(`the https_web bundle endpoint and OIDC over https (${storeKind()} store)`, { timeout: 240_000 }, () => {
  let ca: TestCa;
  let dir: string;
  let webDir: string;
  let root: string;
  let port: number;
  let url: string;
  const json = async (path: string, init?: Parameters<TestCa['admin']>[1]) => {
    const res = await ca.admin(path, init);
    return { status: res.status, body: (await res.json()) as any };
  };
  const fingerprintOf = (file: string) => new X509Certificate(readFileSync(join(dir, file))).fingerprint256;
  /** Replaces a served file the way operators (and cert-manager) should: write aside, rename over. */
  const replace = (from: string, to: string) => {
    copyFileSync(join(dir, from), join(webDir, `${to}.tmp`));
    renameSync(join(webDir, `${to}.tmp`), join(webDir, to));
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-web-ep-'));
    makePki(dir);
    root = readFileSync(join(dir, 'root.pem'), 'utf8');
    webDir = join(dir, 'web');
    mkdirSync(webDir);
    copyFileSync(join(dir, 'a.pem'), join(webDir, 'web.pem'));
    copyFileSync(join(dir, 'a.key'), join(webDir, 'web.key'));
    ca = await startTestCa({ config: { webCertDir: webDir, federationEndpoints: ['localhost'] } });
    port = await freePort();
    url = `https://localhost:${port}`;
  });
  afterAll(async () => {
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the SPIFFE bundle with the operator\'s certificate; show reports the URL and profile', async () => {
    const created = await json('/v1/trust-domains', { body: { name: TD, bundleEndpointListen: `127.0.0.1:${port}`, bundleEndpointUrl: url, bundleEndpointProfile: 'https_web', bundleEndpointCert: 'web.pem', bundleEndpointKey: 'web.key' } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const shown = await json(`/v1/trust-domains/${TD}`);
    expect(shown.body).toMatchObject({ bundleEndpointUrl: url, bundleEndpointProfile: 'https_web', bundleEndpointCert: 'web.pem', bundleEndpointKey: 'web.key' });
    expect(shown.body).not.toHaveProperty('bundleEndpointSpiffeId');
    const res = await waitFor('the https_web endpoint', () => get(`${url}/`, root).catch(() => undefined));
    expect(res.status).toBe(200);
    expect(res.peer.fingerprint256).toBe(fingerprintOf('a.pem'));
    const doc = JSON.parse(res.body);
    expect(doc).toMatchObject({ spiffe_sequence: expect.any(Number), spiffe_refresh_hint: 300 });
    const published = await (await fetch(`${ca.url}/td/${TD}/bundle`)).json();
    expect(doc.keys).toEqual(published.keys);
  });

  it('serves a replaced certificate without a restart (node and openssl s_client see it); a bad pair keeps the last good one, logged once', async () => {
    replace('b.pem', 'web.pem');
    replace('b.key', 'web.key');
    await waitFor('the new certificate', async () => ((await get(`${url}/`, root)).peer.fingerprint256 === fingerprintOf('b.pem') ? true : undefined), 60_000);
    const { stdout } = await promisify(execFile)('sh', ['-c', `openssl s_client -connect 127.0.0.1:${port} -servername localhost -CAfile ${join(dir, 'root.pem')} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`]);
    expect(stdout.trim().split('=')[1]).toBe(fingerprintOf('b.pem'));

    // the key of another certificate: a half-done or wrong replacement
    const before = ca.logs().split('\n').length;
    replace('a.key', 'web.key');
    await waitFor('the error line', () => (ca.logs().includes('keeps serving its last good certificate') ? true : undefined), 60_000);
    const line = ca.logs().split('\n').slice(before - 1).filter((l) => l.includes('keeps serving its last good certificate'));
    expect(line).toHaveLength(1);
    expect(line[0]).toMatch(/"level":50/);
    expect(line[0]).toContain('is not the key of the certificate');
    expect(ca.logs()).not.toMatch(/PRIVATE KEY/);
    expect((await get(`${url}/`, root)).peer.fingerprint256).toBe(fingerprintOf('b.pem'));
    // still bad on later checks: no second line; a missing file is another problem, logged once too
    rmSync(join(webDir, 'web.key'));
    await waitFor('the missing file reported', () => (ca.logs().includes('no such file in the CA') ? true : undefined), 60_000);
    expect(ca.logs().split('\n').filter((l) => l.includes('keeps serving its last good certificate'))).toHaveLength(2);
    expect((await get(`${url}/`, root)).peer.fingerprint256).toBe(fingerprintOf('b.pem'));
    replace('a.key', 'web.key');
    replace('a.pem', 'web.pem');
    await waitFor('the repaired pair', async () => ((await get(`${url}/`, root)).peer.fingerprint256 === fingerprintOf('a.pem') ? true : undefined), 60_000);
  });

  it('an admin credential cannot make the CA read files outside the web certificate directory', async () => {
    // files outside the directory that would make a valid pair, and links to them from inside it
    mkdirSync(join(dir, 'elsewhere'));
    for (const f of ['outside.pem', 'outside.key']) copyFileSync(join(dir, f), join(dir, 'elsewhere', f));
    symlinkSync(join(dir, 'elsewhere', 'outside.pem'), join(webDir, 'link.pem'));
    symlinkSync(join(dir, 'elsewhere', 'outside.key'), join(webDir, 'link.key'));
    symlinkSync(join(dir, 'elsewhere'), join(webDir, 'ext'));
    symlinkSync(join(dir, 'elsewhere', 'missing.key'), join(webDir, 'dangling.key'));
    const attempts: [string, string][] = [
      ['../elsewhere/outside.pem', '../elsewhere/outside.key'],
      [join(dir, 'elsewhere', 'outside.pem'), join(dir, 'elsewhere', 'outside.key')],
      ['web.pem', '/etc/shadow'],
      ['web.pem', '/var/lib/cairn/kek'],
      ['web.pem', '/etc/no-such-file-here'],
      ['web.pem', 'sub/../../elsewhere/outside.key'],
      ['link.pem', 'link.key'],
      ['ext/outside.pem', 'ext/outside.key'],
      ['web.pem', 'ext/no-such-file'],
      ['web.pem', 'dangling.key'],
    ];
    const answers = new Set<string>();
    for (const [cert, key] of attempts) {
      const res = await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { bundleEndpointCert: cert, bundleEndpointKey: key } });
      expect(res.status, `${cert} ${key}: ${JSON.stringify(res.body)}`).toBe(403);
      expect(res.body.code).toBe('web_certificate_file_not_allowed');
      answers.add(res.body.message.replace(/bundleEndpoint(Cert|Key)/, 'FIELD'));
    }
    // one answer for all: nothing tells whether an outside file exists
    expect([...answers]).toHaveLength(1);
    const cli = await runCairnAsync(['trust-domain', 'update', TD, '--bundle-endpoint-key', '/var/lib/cairn/kek', '--server', ca.url], { CAIRN_ADMIN_TOKEN: ca.adminToken, CAIRN_SERVER: undefined, CAIRN_CA_PIN: undefined, CAIRN_CA_FILE: undefined });
    expect(cli.status).not.toBe(0);
    expect(cli.stderr).toMatch(/^error: web_certificate_file_not_allowed: bundleEndpointKey must name a file in the CA's web certificate directory/m);
    expect((await json(`/v1/trust-domains/${TD}`)).body).toMatchObject({ bundleEndpointCert: 'web.pem', bundleEndpointKey: 'web.key' });
    expect((await get(`${url}/`, root)).peer.fingerprint256).toBe(fingerprintOf('a.pem'));
    // inside the directory, problems are told plainly
    copyFileSync(join(dir, 'b.key'), join(webDir, 'other.key'));
    const mismatch = await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { bundleEndpointKey: 'other.key' } });
    expect([mismatch.status, mismatch.body.code]).toEqual([400, 'web_certificate_invalid']);
    expect(mismatch.body.message).toMatch(/other\.key is not the key of the certificate in web\.pem/);
    const missing = await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { bundleEndpointKey: 'nope.key' } });
    expect([missing.status, missing.body.code]).toEqual([400, 'web_certificate_invalid']);
    const spiffeId = await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { bundleEndpointSpiffeId: `spiffe://${TD}/x` } });
    expect([spiffeId.status, spiffeId.body.code]).toEqual([400, 'invalid_request']);
  });

  it('a CA whose operator names no directory refuses https_web with a clear 403', async () => {
    const other = await startTestCa();
    try {
      const res = await other.admin('/v1/trust-domains', { body: { name: 'no-web.test', bundleEndpointListen: `127.0.0.1:${await freePort()}`, bundleEndpointProfile: 'https_web', bundleEndpointCert: 'web.pem', bundleEndpointKey: '/etc/shadow' } });
      const body = (await res.json()) as { code: string; message: string };
      expect([res.status, body.code]).toEqual([403, 'web_certificate_file_not_allowed']);
      expect(body.message).toMatch(/--web-cert-dir/);
    } finally {
      await other.close();
    }
  });

  it('the federation refresher fetches an https_web endpoint with the web roots it was given', async () => {
    expect((await json('/v1/trust-domains', { body: { name: HOME } })).status).toBe(201);
    const created = await json(`/v1/trust-domains/${HOME}/federation/relationships`, { body: { foreignTrustDomain: TD, bundleEndpointUrl: `${url}/`, profile: 'https_web', webRoots: root } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const sequence = (await (await fetch(`${ca.url}/td/${TD}/bundle`)).json()).spiffe_sequence;
    const rel = await waitFor('the refresh', async () => {
      const r = (await json(`/v1/trust-domains/${HOME}/federation/relationships/${TD}`)).body;
      return r.sequence === sequence ? r : undefined;
    }, 60_000);
    expect(rel.lastError).toBeNull();
  });

  it('serves OIDC discovery and the JWKS over https: issuer and jwks_uri on the endpoint, a JWT-SVID verifies with jose', async () => {
    const noIssuer = await get(`${url}/.well-known/openid-configuration`, root);
    expect([noIssuer.status, JSON.parse(noIssuer.body).code]).toEqual([404, 'oidc_issuer_not_configured']);
    expect((await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { jwtIssuer: url } })).status).toBe(200);
    const res = await get(`${url}/.well-known/openid-configuration`, root);
    expect(res.status).toBe(200);
    const discovery = JSON.parse(res.body);
    expect(discovery).toMatchObject({ issuer: url, jwks_uri: `${url}/jwks`, response_types_supported: ['id_token'] });
    // the CA's own listeners point jwks_uri at the issuer too (the TLS listener used to say http)
    const plain = await (await fetch(`${ca.url}/td/${TD}/.well-known/openid-configuration`)).json();
    const overTls = await new Promise<any>((resolve, reject) => {
      request(`${ca.tlsUrl}/td/${TD}/.well-known/openid-configuration`, { rejectUnauthorized: false, agent: false }, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString('utf8')));
        r.on('end', () => resolve(JSON.parse(body)));
      }).on('error', reject).end();
    });
    for (const doc of [plain, overTls]) expect(doc).toMatchObject({ issuer: url, jwks_uri: `${url}/jwks` });
    const minted = await json('/v1/jwt-svids', { body: { spiffeId: `spiffe://${TD}/workload`, audience: ['sts.example'] } });
    expect(minted.status, JSON.stringify(minted.body)).toBeLessThan(300);
    const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri), {
      [customFetch]: async (target: string) => {
        const r = await get(target, root);
        return new Response(r.body, { status: r.status, headers: { 'content-type': String(r.headers['content-type']) } });
      },
    });
    const { payload } = await jwtVerify(minted.body.token, jwks, { issuer: url, audience: 'sts.example' });
    expect(payload.sub).toBe(`spiffe://${TD}/workload`);
    // an issuer with a path: served under it
    expect((await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { jwtIssuer: `${url}/oidc` } })).status).toBe(200);
    const pathed = JSON.parse((await get(`${url}/oidc/.well-known/openid-configuration`, root)).body);
    expect(pathed).toMatchObject({ issuer: `${url}/oidc`, jwks_uri: `${url}/oidc/jwks` });
    expect((await get(`${url}/oidc/jwks`, root)).status).toBe(200);
    expect((await get(`${url}/.well-known/openid-configuration`, root)).status).toBe(404);
  });
});

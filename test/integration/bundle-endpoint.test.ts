import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { freePort, runCairnAsync } from '../support/processes.js';

const TD = 'fed-endpoint.test';
const ENDPOINT_ID = `spiffe://${TD}/cairn/bundle-endpoint`;

/** GET / as a federated peer does (https_spiffe): trust only the bundle, and require the endpoint's SPIFFE ID. */
function fetchBundle(port: number, bundlePem: string, expectedId = ENDPOINT_ID): Promise<{ status: number; body: string; peer: X509Certificate; type: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path: '/', method: 'GET', ca: bundlePem, agent: false,
      // an SVID names no host: the check is its URI SAN, as go-spiffe's federation client does
      checkServerIdentity: (_host, cert) => (cert.subjectaltname === `URI:${expectedId}` ? undefined : new Error(`endpoint presented ${cert.subjectaltname}`)),
    }, (res) => {
      const peer = new X509Certificate((res.socket as import('node:tls').TLSSocket).getPeerX509Certificate()!.raw);
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, peer, type: res.headers['content-type'] }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('no answer from the bundle endpoint in 10 s')));
    req.on('error', reject);
    req.end();
  });
}

const refused = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe(`the SPIFFE federation bundle endpoint, https_spiffe (${storeKind()} store)`, { timeout: 180_000 }, () => {
  let ca: TestCa;
  let dir: string;
  let port: number;
  const json = async (path: string, init?: Parameters<TestCa['admin']>[1]) => {
    const res = await ca.admin(path, init);
    return { status: res.status, body: (await res.json()) as any };
  };
  const bundlePem = async (): Promise<string> => (await fetch(`${ca.url}/td/${TD}/bundle.pem`)).text();
  const cli = (...args: string[]) => runCairnAsync(['trust-domain', ...args, '--server', ca.url], { CAIRN_ADMIN_TOKEN: ca.adminToken, CAIRN_SERVER: undefined, CAIRN_CA_PIN: undefined, CAIRN_CA_FILE: undefined });

  beforeAll(async () => {
    ca = await startTestCa();
    dir = mkdtempSync(join(tmpdir(), 'cairn-bundle-ep-'));
    port = await freePort();
    const created = await json('/v1/trust-domains', { body: { name: TD, bundleEndpointListen: `127.0.0.1:${port}` } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ bundleEndpointListen: `127.0.0.1:${port}`, bundleEndpointUrl: `https://127.0.0.1:${port}`, bundleEndpointProfile: 'https_spiffe', bundleEndpointSpiffeId: ENDPOINT_ID });
  });
  afterAll(async () => {
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the SPIFFE bundle document, authenticated by an SVID of the trust domain', async () => {
    const pem = await bundlePem();
    const res = await until('the endpoint', () => fetchBundle(port, pem));
    expect(res.status).toBe(200);
    expect(res.type).toBe('application/json');
    const doc = JSON.parse(res.body) as { spiffe_sequence: number; spiffe_refresh_hint: number; keys: { use: string }[] };
    const published = await (await fetch(`${ca.url}/td/${TD}/bundle`)).json();
    expect(doc).toEqual(published);
    expect(doc.spiffe_sequence).toBeGreaterThan(0);
    expect(doc.spiffe_refresh_hint).toBe(300);
    expect(res.peer.subjectAltName).toBe(`URI:${ENDPOINT_ID}`);
    // an independent TLS client: openssl verifies the endpoint's chain against the bundle alone
    writeFileSync(join(dir, 'bundle.pem'), pem);
    // (asynchronously: the endpoint runs in this process)
    const child = promisify(execFile)('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', join(dir, 'bundle.pem'), '-verify_return_error', '-brief'], { timeout: 20_000 });
    child.child.stdin?.end();
    const { stderr } = await child;
    expect(stderr).toMatch(/Verification: OK/);
    expect(stderr).toMatch(/Protocol version: TLSv1\.3/);
    // only GET / (as SPIRE's server); no client certificate asked for
    const other = await new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/other', ca: pem, agent: false, checkServerIdentity: () => undefined }, (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
      }).on('error', reject).end();
    });
    expect(other).toBe(404);
  });

  it('a bundle change is served at once (the document is read per request)', async () => {
    const pem = await bundlePem();
    const before = JSON.parse((await fetchBundle(port, pem)).body) as { spiffe_sequence: number; keys: unknown[] };
    expect((await ca.admin(`/v1/trust-domains/${TD}/authorities/prepare`, { method: 'POST', body: { kind: 'x509' } })).status).toBe(201);
    const after = JSON.parse((await fetchBundle(port, await bundlePem())).body) as { spiffe_sequence: number; keys: unknown[] };
    expect(after.spiffe_sequence).toBeGreaterThan(before.spiffe_sequence);
    expect(after.keys.length).toBe(before.keys.length + 1);
  });

  it('moves and stops with the configuration, without a restart', async () => {
    const next = await freePort();
    const moved = await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { bundleEndpointListen: `127.0.0.1:${next}` } });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(moved.body.bundleEndpointUrl).toBe(`https://127.0.0.1:${next}`);
    const pem = await bundlePem();
    expect((await until('the moved endpoint', () => fetchBundle(next, pem))).status).toBe(200);
    await until('the old port to close', async () => ((await refused(port)) ? true : undefined));
    port = next;

    const removed = await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { bundleEndpointListen: null } });
    expect(removed.status).toBe(200);
    expect(removed.body.bundleEndpointUrl).toBeUndefined();
    await until('the endpoint to stop', async () => ((await refused(port)) ? true : undefined));
  });

  it('the CLI sets and shows it; a port it cannot take is logged, and the CA keeps serving', async () => {
    const p = await freePort();
    const set = await cli('update', TD, '--bundle-endpoint-listen', `127.0.0.1:${p}`, '--bundle-endpoint-url', 'https://federation.example.com:8444', '--json');
    expect(set.stderr).toBe('');
    expect(JSON.parse(set.stdout)).toMatchObject({ bundleEndpointUrl: 'https://federation.example.com:8444', bundleEndpointProfile: 'https_spiffe', bundleEndpointSpiffeId: ENDPOINT_ID });
    const shown = await cli('show', TD);
    expect(shown.stdout).toMatch(/bundle endpoint\s+https:\/\/federation\.example\.com:8444 \(https_spiffe, listening on 127\.0\.0\.1:\d+\)/);
    expect((await until('the CLI-set endpoint', async () => fetchBundle(p, await bundlePem()))).status).toBe(200);
    const bad = await cli('update', TD, '--bundle-endpoint-spiffe-id', 'not-an-id');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^error: --bundle-endpoint-spiffe-id must be a SPIFFE ID/);

    // the CA's own TLS port is taken: the endpoint is not served, the error is logged once, nothing crashes
    const tlsPort = Number(new URL(ca.tlsUrl).port);
    expect((await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { bundleEndpointListen: `127.0.0.1:${tlsPort}` } })).status).toBe(200);
    await until('the listen failure in the log', async () => (/bundle endpoint of fed-endpoint\.test is not served on this replica/.test(ca.logs()) ? true : undefined));
    expect((await json(`/v1/trust-domains/${TD}`)).status).toBe(200);
    // retried on every pass, but no SVID is issued for a listener that cannot start
    const issued = async (): Promise<number> => Number((await ca.handle.db.query<{ n: unknown }>(`SELECT count(*) AS n FROM issued_x509_svids WHERE spiffe_id = $1`, [ENDPOINT_ID])).rows[0]!.n);
    const before = await issued();
    for (let i = 0; i < 3; i++) await ca.handle.bundleEndpoints.reconcile();
    expect(await issued()).toBe(before);
  });

  it('refuses bad settings with a code and a sentence', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ bundleEndpointListen: 'nope' }, 'invalid_request', /HOST:PORT/],
      [{ bundleEndpointListen: '127.0.0.1:0' }, 'invalid_request', /port 1-65535/],
      [{ bundleEndpointListen: '127.0.0.1:8444', bundleEndpointProfile: 'https_web' }, 'invalid_request', /https_web profile needs bundleEndpointCert and bundleEndpointKey/],
      [{ bundleEndpointListen: '127.0.0.1:8444', bundleEndpointProfile: 'https_ftp' }, 'invalid_request', /must be https_spiffe or https_web/],
      [{ bundleEndpointListen: '127.0.0.1:8444', bundleEndpointCert: 'web.pem' }, 'invalid_request', /for the https_web profile/],
      [{ bundleEndpointListen: '127.0.0.1:8444', bundleEndpointSpiffeId: 'spiffe://other.test/x' }, 'wrong_trust_domain', /must be in trust domain/],
      [{ bundleEndpointListen: '127.0.0.1:8444', bundleEndpointUrl: 'http://plain.example' }, 'invalid_request', /https URL/],
      [{ bundleEndpointListen: '127.0.0.1:8444', bundleEndpointUrl: 'https://user:pw@x.example' }, 'invalid_request', /without credentials/],
      [{ bundleEndpointListen: null, bundleEndpointUrl: 'https://x.example' }, 'invalid_request', /takes no other/],
    ];
    for (const [body, code, message] of cases) {
      const res = await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.code).toBe(code);
      expect(res.body.message).toMatch(message);
    }
    const none = await json('/v1/trust-domains', { body: { name: 'no-endpoint.test' } });
    expect(none.status).toBe(201);
    const orphan = await json('/v1/trust-domains/no-endpoint.test', { method: 'PATCH', body: { bundleEndpointUrl: 'https://x.example' } });
    expect(orphan.status).toBe(400);
    expect(orphan.body.message).toMatch(/has no bundle endpoint/);
  });
});

import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/paths.js';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import { startCaOnTestStore } from '../support/ca-process.js';
import { storeKind } from '../support/db.js';
import { enterprisePki, selfSignedCa, signWith, verifyWithRoot, type EnterprisePki } from '../support/enterprise-ca.js';
import { firstMessage, grpcWorkloadClient, type X509SvidWire } from '../support/grpc-workload.js';
import { runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';

const TD = 'upstream.test';
const PEMS = (text: string): string[] => text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];

/**
 * Issue 15's upstream proof with real processes: `cairn ca start`, a trust domain created with
 * `--upstream-ca-cert/--upstream-ca-key` from an enterprise PKI made by the openssl CLI (root and
 * issuing CA), `cairn agent start` serving the Workload API. openssl verifies every SVID against the
 * enterprise root alone (intermediates untrusted), and a Python grpcio client (not our code) accepts
 * the chain from the socket.
 */
describe(`a disk upstream authority: SVIDs chain to the enterprise root (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-upstream-'));
  chmodSync(dir, 0o755);
  let pki: EnterprisePki;
  let ca: Awaited<ReturnType<typeof startCaOnTestStore>>;
  let agent: Spawned | undefined;
  let cliEnv: Record<string, string | undefined>;
  const cairn = (...args: string[]) => runCairnAsync(args, cliEnv);

  beforeAll(async () => {
    mkdirSync(join(dir, 'pki'));
    pki = enterprisePki(join(dir, 'pki'));
    ca = await startCaOnTestStore(join(dir, 'ca'));
    cliEnv = { CAIRN_SERVER: ca.httpUrl, CAIRN_ADMIN_TOKEN: readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim(), CAIRN_DATA_DIR: join(dir, 'cli') };
    const created = await cairn('trust-domain', 'create', TD, '--upstream-ca-cert', pki.issuingChain, '--upstream-ca-key', pki.issuingKey, '--ca-ttl', '30d');
    expect(created.status, created.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await agent?.stop();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the bundle carries the enterprise root only; x509 mint --write puts leaf + intermediates in svid.pem and the root in bundle.pem', async () => {
    const bundle = await (await fetch(`${ca.httpUrl}/td/${TD}/bundle`)).json() as { keys: { use: string; x5c: string[] }[] };
    const x509Keys = bundle.keys.filter((k) => k.use === 'x509-svid');
    expect(x509Keys).toHaveLength(1);
    expect(new X509Certificate(Buffer.from(x509Keys[0]!.x5c[0]!, 'base64')).raw.equals(new X509Certificate(pki.rootPem).raw)).toBe(true);

    const out = join(dir, 'minted');
    const minted = await cairn('x509', 'mint', '--spiffe-id', `spiffe://${TD}/minted`, '--write', out);
    expect(minted.status, minted.stderr).toBe(0);
    const svidPem = readFileSync(join(out, 'svid.pem'), 'utf8');
    const chain = PEMS(svidPem).map((p) => new X509Certificate(p));
    // leaf, the trust domain's CA (signed by the issuing CA), the issuing CA; never the root
    expect(chain).toHaveLength(3);
    expect(chain[2]!.raw.equals(new X509Certificate(readFileSync(pki.issuingCert)).raw)).toBe(true);
    expect(chain[1]!.checkIssued(chain[2]!)).toBe(true);
    expect(chain[1]!.verify(chain[2]!.publicKey)).toBe(true);
    expect(chain[1]!.subjectAltName).toBe(`URI:spiffe://${TD}`);
    expect(PEMS(readFileSync(join(out, 'bundle.pem'), 'utf8'))).toEqual(PEMS(pki.rootPem));
    expect(verifyWithRoot(dir, pki.rootPem, svidPem)).toMatch(/: OK/);
    // the root alone without the intermediates does not do: the chain is what makes it verify
    expect(() => verifyWithRoot(dir, pki.rootPem, PEMS(svidPem)[0]!)).toThrow(/unable to get local issuer certificate/);
  });

  it('an agent serves the chain on its socket: openssl and an independent Python grpcio client accept it; svid fetch --write writes it', { timeout: 180_000 }, async () => {
    const { body: tok } = await ca.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: TD });
    expect((await ca.admin('/v1/entries', { spiffeId: `spiffe://${TD}/web`, parentId: tok.spiffeId, selectors: [`unix:uid:${process.getuid!()}`] })).status).toBe(201);
    const socket = join(dir, 'agent.sock');
    agent = spawnCairn(['agent', 'start', '--data-dir', join(dir, 'agent'), '--socket', socket, '--join-token', tok.token], { CAIRN_DATA_DIR: undefined, CAIRN_LOG_LEVEL: 'info' });
    await agent.waitFor(/serving the Workload API/, 60_000);
    const healthy = await runCairnAsync(['agent', 'healthcheck', '--socket', socket, '--wait', '60s']);
    expect(healthy.status, `${healthy.stderr}\n${agent.stderr().slice(-3000)}`).toBe(0);

    // grpc-js reading our .proto: x509_svid is leaf||intermediates, bundle the root
    const client = grpcWorkloadClient(socket);
    try {
      const m = await firstMessage<{ svids: X509SvidWire[] }>(client, 'FetchX509SVID');
      const svid = m.svids.find((s) => s.spiffe_id === `spiffe://${TD}/web`)!;
      expect(splitDerCertificates(svid.x509_svid)).toHaveLength(3);
      expect(splitDerCertificates(svid.bundle).map((d) => new X509Certificate(d).subject)).toEqual([new X509Certificate(pki.rootPem).subject]);
    } finally {
      client.close();
    }

    const py = spawnSync('/usr/bin/python3', [join(packageRoot(), 'test', 'support', 'workload_x509.py'), socket], { encoding: 'utf8', timeout: 60_000 });
    expect(py.status, `${py.stdout}\n${py.stderr}`).toBe(0);
    const report = JSON.parse(py.stdout) as { ok: boolean; svids: { spiffeId: string; chainLength: number; anchor: string; chainPem: string; bundlePem: string }[] };
    const web = report.svids.find((s) => s.spiffeId === `spiffe://${TD}/web`)!;
    expect(web.chainLength).toBe(3);
    expect(web.anchor).toContain('Example Bank Root CA');
    expect(verifyWithRoot(dir, pki.rootPem, web.chainPem)).toMatch(/: OK/);

    const out = join(dir, 'fetched');
    const fetched = await runCairnAsync(['svid', 'fetch', '--socket', socket, '--write', out]);
    expect(fetched.status, fetched.stderr).toBe(0);
    expect(PEMS(readFileSync(join(out, 'svid.pem'), 'utf8'))).toHaveLength(3);
    expect(PEMS(readFileSync(join(out, 'bundle.pem'), 'utf8'))).toEqual(PEMS(pki.rootPem));
    expect(verifyWithRoot(dir, pki.rootPem, readFileSync(join(out, 'svid.pem'), 'utf8'))).toMatch(/: OK/);
    // the agent's own SVID carries the chain too (it authenticates to the CA with it)
    expect(agent.stderr()).not.toMatch(/"level":50/);
  });

  it('an agentless device: bootstrap and renew write the chain in svid.pem and the root in bundle.pem, and renew authenticates with the chain', { timeout: 120_000 }, async () => {
    const dev = join(dir, 'device');
    const tok = await ca.admin<{ token: string }>('/v1/tokens', { trustDomain: TD, spiffeId: `spiffe://${TD}/device/1` });
    const boot = await runCairnAsync(['bootstrap', '--token', tok.body.token, '--write', dev], { CAIRN_DATA_DIR: undefined });
    expect(boot.status, boot.stderr).toBe(0);
    const first = readFileSync(join(dev, 'svid.pem'), 'utf8');
    expect(PEMS(first)).toHaveLength(3);
    expect(PEMS(readFileSync(join(dev, 'bundle.pem'), 'utf8'))).toEqual(PEMS(pki.rootPem));
    expect(verifyWithRoot(dir, pki.rootPem, first)).toMatch(/: OK/);
    const renewed = await runCairnAsync(['renew', '--dir', dev], { CAIRN_DATA_DIR: undefined });
    expect(renewed.status, renewed.stderr).toBe(0);
    const second = readFileSync(join(dev, 'svid.pem'), 'utf8');
    expect(PEMS(second)[0]).not.toBe(PEMS(first)[0]);
    expect(PEMS(second)).toHaveLength(3);
    expect(verifyWithRoot(dir, pki.rootPem, second)).toMatch(/: OK/);
  });

  it('refuses an upstream that is not a CA, a key that is not its key, one that expires before the CA would, and malformed PEM, naming the flag', { timeout: 120_000 }, async () => {
    const p = join(dir, 'pki');
    const leaf = signWith(p, 'not-a-ca', { cert: pki.rootCert, key: pki.rootKey }, { days: 365, ext: 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' });
    const noSign = signWith(p, 'no-certsign', { cert: pki.rootCert, key: pki.rootKey }, { days: 365, ext: 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n' });
    const pathLen0 = selfSignedCa(p, 'pathlen0', '/CN=Path Len Zero', 365, 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n');
    const shortLived = selfSignedCa(p, 'short-lived', '/CN=Short Lived Root', 2);
    const withRoot = (cert: string): string => {
      const f = `${cert}.chain`;
      writeFileSync(f, readFileSync(cert, 'utf8') + pki.rootPem);
      return f;
    };
    const garbage = join(p, 'garbage.pem');
    writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
    const keyInCert = join(p, 'key-as-cert.pem');
    writeFileSync(keyInCert, readFileSync(pki.issuingKey, 'utf8'));
    const cases: { name: string; cert: string; key: string; code: string; flag: string; more?: RegExp }[] = [
      { name: 'a leaf', cert: withRoot(leaf.cert), key: leaf.key!, code: 'upstream_not_ca', flag: '--upstream-ca-cert', more: /not a CA certificate/ },
      { name: 'no keyCertSign', cert: withRoot(noSign.cert), key: noSign.key!, code: 'upstream_not_ca', flag: '--upstream-ca-cert', more: /lacks keyCertSign/ },
      { name: 'pathlen 0', cert: pathLen0.cert, key: pathLen0.key, code: 'upstream_not_ca', flag: '--upstream-ca-cert', more: /pathLenConstraint 0/ },
      { name: 'the wrong key', cert: pki.issuingChain, key: pki.rootKey, code: 'upstream_key_mismatch', flag: '--upstream-ca-key' },
      { name: 'expiring before the CA', cert: shortLived.cert, key: shortLived.key, code: 'upstream_expires_too_soon', flag: '--upstream-ca-cert', more: /--ca-ttl/ },
      { name: 'no chain to a root', cert: pki.issuingCert, key: pki.issuingKey, code: 'invalid_upstream_ca', flag: '--upstream-ca-cert', more: /self-signed root/ },
      { name: 'garbage PEM', cert: garbage, key: pki.issuingKey, code: 'invalid_upstream_ca', flag: '--upstream-ca-cert', more: /not a valid X.509 certificate/ },
      { name: 'a key where the certificate goes', cert: keyInCert, key: pki.issuingKey, code: 'invalid_upstream_ca', flag: '--upstream-ca-cert', more: /PRIVATE KEY/ },
      { name: 'a certificate where the key goes', cert: pki.issuingChain, key: pki.issuingCert, code: 'invalid_upstream_ca', flag: '--upstream-ca-key', more: /no PEM private key/ },
    ];
    const keyText = readFileSync(pki.issuingKey, 'utf8').split('\n')[1]!;
    for (const [i, c] of cases.entries()) {
      const r = await cairn('trust-domain', 'create', `refused${i}.test`, '--upstream-ca-cert', c.cert, '--upstream-ca-key', c.key);
      expect(r.status, `${c.name}: ${r.stderr}`).toBe(1);
      expect(r.stderr, c.name).toMatch(new RegExp(`^error: ${c.code}: ${c.flag}: `, 'm'));
      if (c.more) expect(r.stderr, c.name).toMatch(c.more);
      // key material is never echoed back
      expect(r.stderr).not.toContain(keyText);
      expect((await ca.admin(`/v1/trust-domains/refused${i}.test`)).status, c.name).toBe(404);
    }
    const half = await cairn('trust-domain', 'create', 'half.test', '--upstream-ca-cert', pki.issuingChain);
    expect(half.status).toBe(2);
    expect(half.stderr).toMatch(/^error: --upstream-ca-key is required with --upstream-ca-cert/m);
    const missing = await cairn('trust-domain', 'create', 'missing.test', '--upstream-ca-cert', join(p, 'nope.pem'), '--upstream-ca-key', pki.issuingKey);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^error: cannot read the upstream CA certificate \(--upstream-ca-cert\) .*nope\.pem: ENOENT/m);
    // the same through the REST API: a 400 with the code and the field
    const rest = await ca.admin<{ code: string; message: string; details?: { field?: string } }>('/v1/trust-domains', {
      name: 'rest.test', upstreamCaCertificate: readFileSync(pki.issuingChain, 'utf8'), upstreamCaKey: readFileSync(pki.rootKey, 'utf8'),
    });
    expect(rest.status).toBe(400);
    expect(rest.body.code).toBe('upstream_key_mismatch');
    expect(rest.body.details?.field).toBe('upstreamCaKey');
    expect(JSON.stringify(rest.body)).not.toContain(keyText);
    // a path is just bad PEM: the CA opens no file an admin names
    const path = await ca.admin<{ code: string }>('/v1/trust-domains', { name: 'path.test', upstreamCaCertificate: pki.issuingChain, upstreamCaKey: pki.issuingKey });
    expect(path.status).toBe(400);
    expect(path.body.code).toBe('invalid_upstream_ca');
  });
});

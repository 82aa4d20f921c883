import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr } from '../../lib/pkcs10.js';
import { FakeClock } from '../support/clock.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { ecKey, enterprisePki, selfSignedCa, verifyWithRoot, type EnterprisePki } from '../support/enterprise-ca.js';
import { runCairnAsync } from '../support/processes.js';

const DAY = 86400;
const PEMS = (text: string): string[] => text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];

/**
 * Upstream authorities on an injected clock: a disk upstream signs each rotated CA certificate
 * itself; the offline flow (authority prepare --csr-out, openssl signs, authority import) publishes
 * the upstream root, activates on the schedule, and reports when the next signed CA is due.
 */
describe(`upstream authorities: rotation and the offline flow (${storeKind()} store)`, { timeout: 240_000 }, () => {
  const clock = new FakeClock(new Date());
  const dir = mkdtempSync(join(tmpdir(), 'cairn-upstream-int-'));
  let ca: TestCa;
  let pki: EnterprisePki;
  const at = (): string[] => ['-attime', String(Math.floor(clock.now().getTime() / 1000))];
  const cairn = (...args: string[]) => runCairnAsync(args, { CAIRN_SERVER: ca.url, CAIRN_ADMIN_TOKEN: ca.adminToken, CAIRN_DATA_DIR: dir, CAIRN_CA_PIN: undefined, CAIRN_CA_FILE: undefined });
  const mint = async (td: string): Promise<{ certChain: string; bundle: string }> => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const res = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${td}/w`, csr: createCsr(pair.privateKey, pair.publicKey).toString('base64') } });
    expect(res.status).toBe(201);
    return res.json() as Promise<{ certChain: string; bundle: string }>;
  };
  const x509Bundle = async (td: string): Promise<string[]> =>
    ((await (await fetch(`${ca.url}/td/${td}/bundle`)).json()) as { keys: { use: string; x5c: string[] }[] }).keys.filter((k) => k.use === 'x509-svid').map((k) => k.x5c[0]!);
  const authorities = async (td: string) => (await (await ca.admin(`/v1/trust-domains/${td}/authorities?kind=x509`)).json()) as {
    authorities: { id: string; status: string; awaitingCertificate?: boolean; upstreamSigned?: boolean }[];
    upstream?: { mode: string; successorDue: boolean; successorDueAt: string | null; roots: { subject: string }[] };
  };
  const openssl = (args: string[]): string => execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  /** The enterprise issuing CA signs a CSR as a CA certificate, as an operator would with openssl x509 -req. */
  const sign = (csr: string, name: string, opts: { ext?: string; days?: number; issuer?: { cert: string; key: string } } = {}): string => {
    const out = join(dir, `${name}.pem`);
    const issuer = opts.issuer ?? { cert: pki.issuingCert, key: pki.issuingKey };
    const ext = opts.ext === undefined ? ['-copy_extensions', 'copy'] : (writeFileSync(join(dir, `${name}.ext`), opts.ext), ['-extfile', join(dir, `${name}.ext`)]);
    openssl(['x509', '-req', '-in', csr, '-CA', issuer.cert, '-CAkey', issuer.key, '-CAcreateserial', '-days', String(opts.days ?? 30), ...ext, '-out', out]);
    return out;
  };

  beforeAll(async () => {
    pki = enterprisePki(dir);
    // the injected clock starts once the enterprise PKI exists (openssl stamps it with the wall clock)
    clock.set(new Date());
    ca = await startTestCa({ clock });
  });
  afterAll(async () => {
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('disk upstream: rotation signs the next CA certificate with the upstream key; the bundle keeps only the root', async () => {
    const TD = 'disk.test';
    const created = await ca.admin('/v1/trust-domains', {
      body: { name: TD, caTtlSeconds: DAY, x509SvidTtlSeconds: 3600, upstreamCaCertificate: readFileSync(pki.issuingChain, 'utf8'), upstreamCaKey: readFileSync(pki.issuingKey, 'utf8') },
    });
    expect(created.status, await created.clone().text()).toBe(201);
    // nothing of the upstream key in the answer
    expect(await created.text()).not.toMatch(/PRIVATE KEY|upstreamCaKey/);
    const first = await mint(TD);
    const firstCa = new X509Certificate(PEMS(first.certChain)[1]!);
    expect(verifyWithRoot(dir, pki.rootPem, first.certChain, at())).toMatch(/OK/);

    clock.advance(DAY * 0.55); // past half life: a successor, signed by the upstream
    expect(await ca.core.authority.rotate(TD)).toBe(true);
    const listed = await authorities(TD);
    const prepared = listed.authorities.find((a) => a.status === 'prepared')!;
    expect(prepared.upstreamSigned).toBe(true);
    expect(listed.upstream).toMatchObject({ mode: 'disk', successorDue: false, successorDueAt: null });
    expect(listed.upstream!.roots.map((r) => r.subject)).toEqual(['C=US, O=Example Bank, CN=Example Bank Root CA']);
    // both CA certificates chain to the same root: the bundle still holds it once
    expect(await x509Bundle(TD)).toEqual([new X509Certificate(pki.rootPem).raw.toString('base64')]);

    clock.advance(DAY * 0.3); // activation point
    expect(await ca.core.authority.rotate(TD)).toBe(true);
    const after = await mint(TD);
    const [, newCaPem, issuingPem] = PEMS(after.certChain);
    const newCa = new X509Certificate(newCaPem!);
    expect(newCa.serialNumber).not.toBe(firstCa.serialNumber);
    expect(newCa.verify(new X509Certificate(issuingPem!).publicKey)).toBe(true);
    expect(newCa.issuer).toBe(new X509Certificate(readFileSync(pki.issuingCert)).subject);
    expect(PEMS(after.bundle)).toEqual(PEMS(pki.rootPem));
    expect(execFileSync('openssl', ['verify', ...at(), '-CAfile', pki.rootCert, '-untrusted', writeTmp('untrusted.pem', PEMS(after.certChain).slice(1).join('')), writeTmp('leaf.pem', PEMS(after.certChain)[0]!)], { encoding: 'utf8' })).toMatch(/OK/);
  });

  it('disk upstream: trust-domain update --upstream-ca-cert/--upstream-ca-key renews it; the next CA is signed by the new one and the bundle gains its root', async () => {
    const TD = 'disk.test';
    const renewed = selfSignedCa(dir, 'renewed-root', '/C=US/O=Example Bank/CN=Example Bank Root CA 2', 3650);
    const half = await cairn('trust-domain', 'update', TD, '--upstream-ca-key', renewed.key);
    expect(half.status).toBe(2);
    expect(half.stderr).toMatch(/^error: --upstream-ca-cert is required with --upstream-ca-key/m);
    const wrong = await cairn('trust-domain', 'update', TD, '--upstream-ca-cert', renewed.cert, '--upstream-ca-key', pki.issuingKey);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/^error: upstream_key_mismatch: --upstream-ca-key: /m);
    const updated = await cairn('trust-domain', 'update', TD, '--upstream-ca-cert', renewed.cert, '--upstream-ca-key', renewed.key);
    expect(updated.status, updated.stderr).toBe(0);
    const prepared = await ca.admin(`/v1/trust-domains/${TD}/authorities/prepare`, { method: 'POST', body: { kind: 'x509' } });
    expect(prepared.status, await prepared.clone().text()).toBe(201);
    expect((await prepared.json()).upstreamSigned).toBe(true);
    const roots = [pki.rootPem, readFileSync(renewed.cert, 'utf8')].map((p) => new X509Certificate(p).raw.toString('base64'));
    expect((await x509Bundle(TD)).sort()).toEqual(roots.sort());
    expect((await authorities(TD)).upstream!.roots.map((r) => r.subject)).toEqual(['C=US, O=Example Bank, CN=Example Bank Root CA 2']);
    expect((await ca.admin(`/v1/trust-domains/${TD}/authorities/activate`, { method: 'POST', body: { kind: 'x509' } })).status).toBe(200);
    const svid = await mint(TD);
    expect(PEMS(svid.certChain)).toHaveLength(2); // leaf and the CA; the new upstream is itself the root
    expect(verifyWithRoot(dir, readFileSync(renewed.cert, 'utf8'), svid.certChain, at())).toMatch(/OK/);
  });

  it('disk upstream: a new CA certificate never outlives the upstream (shortened, with a warning)', async () => {
    const TD = 'short.test';
    const root = selfSignedCa(dir, 'ten-day-root', '/CN=Ten Day Root', 10);
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD, caTtlSeconds: 4 * DAY, x509SvidTtlSeconds: 3600, upstreamCaCertificate: readFileSync(root.cert, 'utf8'), upstreamCaKey: readFileSync(root.key, 'utf8') } })).status).toBe(201);
    clock.advance(7.5 * DAY); // rotation runs late: the next CA would end after the root
    expect(await ca.core.authority.rotate(TD)).toBe(true);
    // the active CA expired meanwhile: its successor was made and activated at once
    const newest = ((await authorities(TD)).authorities as unknown as { notBefore: string; notAfter: string }[]).sort((a, b) => a.notBefore.localeCompare(b.notBefore)).at(-1)!;
    expect(new Date(newest.notAfter).getTime()).toBeLessThanOrEqual(new Date(new X509Certificate(readFileSync(root.cert)).validTo).getTime());
    expect(ca.logs()).toMatch(/authority\.upstream_expiring/);
    clock.advance(-7.5 * DAY);
  });

  it('offline upstream: prepare --csr-out, openssl signs, import --chain; the bundle gets the root, rotation reports the next one due', async () => {
    const TD = 'offline.test';
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD, caTtlSeconds: 10 * DAY, x509SvidTtlSeconds: 3600 } })).status).toBe(201);
    const selfSigned = await x509Bundle(TD);
    expect(selfSigned).toHaveLength(1);

    const csrFile = join(dir, 'offline.csr');
    const prepared = await cairn('authority', 'prepare', '--trust-domain', TD, '--kind', 'x509', '--csr-out', csrFile);
    expect(prepared.status, prepared.stderr).toBe(0);
    expect(prepared.stderr).toContain('cairn authority import');
    expect(openssl(['req', '-in', csrFile, '-noout', '-verify', '-text'])).toMatch(/URI:spiffe:\/\/offline\.test[\s\S]*CA:TRUE, pathlen:0|CA:TRUE, pathlen:0[\s\S]*URI:spiffe:\/\/offline\.test/);
    // asking again gives the same key's CSR, not a second key
    const again = join(dir, 'again.csr');
    expect((await cairn('authority', 'prepare', '--trust-domain', TD, '--kind', 'x509', '--csr-out', again)).status).toBe(0);
    expect(openssl(['req', '-in', again, '-noout', '-pubkey'])).toBe(openssl(['req', '-in', csrFile, '-noout', '-pubkey']));
    // not published and not activatable before its certificate comes back
    expect(await x509Bundle(TD)).toEqual(selfSigned);
    const early = await cairn('authority', 'activate', '--trust-domain', TD, '--kind', 'x509');
    expect(early.status).toBe(1);
    expect(early.stderr).toMatch(/^error: authority_invalid_state: .*awaits its upstream-signed certificate/m);
    expect((await authorities(TD)).authorities.find((a) => a.status === 'prepared')!.awaitingCertificate).toBe(true);

    // refusals, each naming the flag
    writeFileSync(join(dir, 'req.cnf'), '[req]\ndistinguished_name=dn\n[dn]\n');
    openssl(['req', '-new', '-key', ecKey(dir, 'other.key'), '-subj', '/CN=other', '-config', join(dir, 'req.cnf'), '-out', join(dir, 'other.csr')]);
    const refusals: { name: string; cert: string; chain?: string; re: RegExp }[] = [
      { name: 'another key', cert: sign(join(dir, 'other.csr'), 'other-key'), chain: pki.issuingChain, re: /^error: upstream_key_mismatch: --cert: the certificate is not for the prepared key/m },
      { name: 'not a CA', cert: sign(csrFile, 'not-ca', { ext: 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=URI:spiffe://offline.test\n' }), chain: pki.issuingChain, re: /^error: upstream_not_ca: --cert: /m },
      { name: 'no SPIFFE ID', cert: sign(csrFile, 'no-san', { ext: 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n' }), chain: pki.issuingChain, re: /^error: invalid_upstream_ca: --cert: .*exactly one URI SAN, spiffe:\/\/offline\.test \(it has none\)/m },
      { name: 'another trust domain', cert: sign(csrFile, 'wrong-td', { ext: 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\nsubjectAltName=URI:spiffe://evil.test\n' }), chain: pki.issuingChain, re: /^error: wrong_trust_domain: --cert: .*spiffe:\/\/evil\.test/m },
      { name: 'no chain', cert: sign(csrFile, 'no-chain'), re: /^error: invalid_upstream_ca: --chain: no certificate given signs/m },
      { name: 'outliving the upstream', cert: sign(csrFile, 'too-long', { days: 4000 }), chain: pki.issuingChain, re: /^error: upstream_expires_too_soon: --chain: the upstream chain expires at/m },
    ];
    for (const r of refusals) {
      const res = await cairn('authority', 'import', '--trust-domain', TD, '--cert', r.cert, ...(r.chain ? ['--chain', r.chain] : []));
      expect(res.status, `${r.name}: ${res.stderr}`).toBe(1);
      expect(res.stderr, r.name).toMatch(r.re);
    }

    const signed = sign(csrFile, 'offline-ca');
    const imported = await cairn('authority', 'import', '--trust-domain', TD, '--cert', signed, '--chain', pki.issuingChain, '--json');
    expect(imported.status, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ status: 'prepared', awaitingCertificate: false, upstreamSigned: true });
    // published at once: the old self-signed CA and the enterprise root
    expect((await x509Bundle(TD)).sort()).toEqual([...selfSigned, new X509Certificate(pki.rootPem).raw.toString('base64')].sort());
    const activated = await cairn('authority', 'activate', '--trust-domain', TD, '--kind', 'x509');
    expect(activated.status, activated.stderr).toBe(0);
    const svid = await mint(TD);
    expect(PEMS(svid.certChain)).toHaveLength(3);
    expect(PEMS(svid.certChain)[1]).toBe(PEMS(readFileSync(signed, 'utf8'))[0]);
    expect(verifyWithRoot(dir, pki.rootPem, svid.certChain, at())).toMatch(/OK/);

    // from now on rotation makes no self-signed CA: it says when a signed one is due
    const listed = await cairn('authority', 'list', '--trust-domain', TD);
    expect(listed.stdout).toMatch(/^upstream: offline, root C=US, O=Example Bank, CN=Example Bank Root CA/m);
    expect(listed.stdout).toMatch(/^signed successor due at /m);
    clock.advance(16 * DAY); // past the half life of the 30-day imported CA
    expect(await ca.core.authority.rotate(TD)).toBe(true); // the expired self-signed CA leaves; nothing is generated
    const due = await authorities(TD);
    expect(due.authorities.filter((a) => a.status === 'prepared')).toEqual([]);
    expect(due.upstream).toMatchObject({ mode: 'offline', successorDue: true });
    expect(ca.logs()).toMatch(/"event":"authority\.successor_due","trustDomain":"offline\.test"/);
    expect((await cairn('authority', 'list', '--trust-domain', TD)).stdout).toMatch(/^signed successor DUE since .*cairn authority prepare --kind x509 --csr-out FILE/m);
    const metrics = await (await fetch(`${ca.url}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`^cairn_authority_successor_due_timestamp_seconds\\{trust_domain="offline\\.test"\\} ${Math.floor(new Date(due.upstream!.successorDueAt!).getTime() / 1000)}`, 'm'));
    // plain prepare is refused (no self-signed CA sneaks in); the next CSR is signed and imported without --chain
    const plain = await cairn('authority', 'prepare', '--trust-domain', TD, '--kind', 'x509');
    expect(plain.status).toBe(1);
    expect(plain.stderr).toMatch(/^error: authority_invalid_state: offline\.test has an offline upstream authority/m);
    const next = join(dir, 'next.csr');
    expect((await cairn('authority', 'prepare', '--trust-domain', TD, '--kind', 'x509', '--csr-out', next)).status).toBe(0);
    const nextImport = await cairn('authority', 'import', '--trust-domain', TD, '--cert', sign(next, 'next-ca'));
    expect(nextImport.status, nextImport.stderr).toBe(0);
    expect((await authorities(TD)).upstream).toMatchObject({ successorDue: false });
    expect((await (await fetch(`${ca.url}/metrics`)).text())).not.toMatch(/cairn_authority_successor_due_timestamp_seconds\{trust_domain="offline\.test"\}/);
    clock.advance(-16 * DAY);
  });

  it('the offline levers refuse a disk-upstream trust domain, and JWT keys', async () => {
    const csr = await cairn('authority', 'prepare', '--trust-domain', 'disk.test', '--kind', 'x509', '--csr-out', join(dir, 'disk.csr'));
    expect(csr.status).toBe(1);
    expect(csr.stderr).toMatch(/^error: authority_invalid_state: disk\.test has a disk upstream authority/m);
    const jwt = await cairn('authority', 'prepare', '--trust-domain', 'disk.test', '--kind', 'jwt', '--csr-out', join(dir, 'jwt.csr'));
    expect(jwt.status).toBe(2);
    expect(jwt.stderr).toMatch(/^error: --csr-out needs --kind x509/m);
  });

  function writeTmp(name: string, text: string): string {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  }
});

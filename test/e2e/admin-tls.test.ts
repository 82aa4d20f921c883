import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchPinnedAuthority } from '../../lib/tls-client.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { registerLogSource } from '../support/logs.js';
import { CLI, freePort, runCairn, runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';

/** sha256 of a certificate's SubjectPublicKeyInfo, base64url, computed by openssl alone (an independent check of the pin). */
function opensslPin(certPem: string): string {
  const pub = execFileSync('openssl', ['x509', '-pubkey', '-noout'], { input: certPem });
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: pub });
  const digest = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der });
  return `sha256:${digest.toString('base64url')}`;
}

/** The certificates a TLS server presents, as openssl s_client shows them (run through `wrapper`, e.g. into a network namespace). */
function presentedChain(host: string, port: number, wrapper: string[] = []): string[] {
  const command = [...wrapper, 'openssl', 's_client', '-connect', `${host.includes(':') ? `[${host}]` : host}:${port}`, '-showcerts'];
  const out = execFileSync(command[0]!, command.slice(1), { input: '', stdio: ['pipe', 'pipe', 'ignore'], timeout: 60_000 }).toString();
  return out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

/** A TLS server with a key of its own (an impostor): records every byte a client sends it after the handshake. */
async function impostor(dir: string): Promise<{ port: number; received: () => number; handshakes: () => number; close: () => Promise<void> }> {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'impostor.key'), '-out', join(dir, 'impostor.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  let bytes = 0;
  let handshakes = 0;
  const server: TlsServer = createTlsServer({ key: readFileSync(join(dir, 'impostor.key')), cert: readFileSync(join(dir, 'impostor.pem')) }, (socket) => {
    handshakes++;
    socket.on('data', (d: Buffer) => (bytes += d.length));
    socket.on('error', () => undefined);
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    received: () => bytes,
    handshakes: () => handshakes,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

// Real processes on a shared 2-core machine: every wait is on a condition, with deadlines for a loaded host.
describe(`admin verbs over TLS (${storeKind()} store)`, { timeout: 240_000 }, () => {
  let dir: string;
  let dataDir: string;
  let up: Spawned;
  let drop: (() => Promise<void>) | undefined;
  let env: Record<string, string | undefined>;
  let endpoints: { caUrl: string; caTlsUrl: string; caPin: string; adminTokenFile: string };
  let token: string;
  let authorityFile: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-admin-tls-'));
    dataDir = join(dir, 'data');
    let databaseUrl: string | undefined;
    if (storeKind() === 'postgres') ({ url: databaseUrl, drop } = await createPgDatabase());
    env = { CAIRN_DATA_DIR: dataDir, DATABASE_URL: databaseUrl, CAIRN_SERVER: undefined, CAIRN_ADMIN_TOKEN: undefined, CAIRN_CA_PIN: undefined, CAIRN_CA_FILE: undefined };
    // the plain listener refuses admin routes even from loopback, so whatever works below went over TLS
    up = spawnCairn(['up', '--listen', `127.0.0.1:${await freePort()}`, '--tls-listen', '127.0.0.1:0', '--plain-admin', 'off'], env);
    await up.waitFor(/Press Ctrl-C to stop/, 180_000);
    endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8'));
    token = readFileSync(endpoints.adminTokenFile, 'utf8').trim();
    authorityFile = join(dir, 'cairn-tls-ca.pem');
    writeFileSync(authorityFile, await fetchPinnedAuthority(endpoints.caTlsUrl, endpoints.caPin));
  }, 240_000);

  afterAll(async () => {
    await up?.stop();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The CLI with no endpoints.json to fall back on: only flags and environment say where and how. */
  const bare = (): Record<string, string | undefined> => {
    const empty = join(dir, 'empty');
    mkdirSync(empty, { recursive: true });
    return { ...env, CAIRN_DATA_DIR: empty, CAIRN_ADMIN_TOKEN: token };
  };

  it('cairn up records the TLS URL and the pin of the TLS authority the listener presents (checked with openssl)', () => {
    expect(endpoints.caTlsUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoints.caPin).toMatch(/^sha256:[A-Za-z0-9_-]{43}$/);
    const chain = presentedChain('127.0.0.1', Number(new URL(endpoints.caTlsUrl).port));
    expect(chain.length).toBe(2);
    expect(opensslPin(chain[1]!)).toBe(endpoints.caPin);
    expect(opensslPin(readFileSync(authorityFile, 'utf8'))).toBe(endpoints.caPin);
    // the same pin as `cairn ca pin` and as the CA's own start-up line
    const pin = runCairn(['ca', 'pin', '--json'], env);
    expect(pin.stderr).toBe('');
    expect(JSON.parse(pin.stdout).pin).toBe(endpoints.caPin);
    expect(up.stdout()).toContain(endpoints.caPin);
  });

  it('admin verbs use the TLS URL and pin from endpoints.json by default', () => {
    const created = runCairn(['trust-domain', 'create', 'tls.test'], env);
    expect(created.stderr).toBe('');
    expect(created.status).toBe(0);
    expect(runCairn(['trust-domain', 'show', 'tls.test', '--json'], env).stdout).toContain('"name": "tls.test"');
  });

  it('--plain-admin off: the plain listener refuses admin routes to loopback too, with a coded 403 naming the TLS URL, and never runs them', async () => {
    const viaPlain = runCairn(['trust-domain', 'list', '--server', endpoints.caUrl], env);
    expect(viaPlain.status).toBe(1);
    expect(viaPlain.stderr).toMatch(/^error: tls_required: .*--plain-admin off.*https:\/\/127\.0\.0\.1:\d+/);
    const res = await fetch(`${endpoints.caUrl}/v1/trust-domains`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'never.test' }) });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: 'tls_required', details: { tlsUrl: endpoints.caTlsUrl } });
    expect(runCairn(['trust-domain', 'show', 'never.test'], env).stderr).toMatch(/trust_domain_not_found/);
    // the public documents stay on both listeners
    for (const base of [endpoints.caUrl]) {
      expect((await fetch(`${base}/td/tls.test/bundle`)).status).toBe(200);
      expect((await fetch(`${base}/td/example.org/jwks`)).status).toBe(200);
      expect((await fetch(`${base}/td/example.org/.well-known/openid-configuration`)).status).toBe(200);
    }
  });

  it('works with --ca-pin, --ca-file, CAIRN_CA_PIN and CAIRN_CA_FILE, without endpoints.json', () => {
    const e = bare();
    const tls = endpoints.caTlsUrl;
    for (const [args, extra] of [
      [['--server', tls, '--ca-pin', endpoints.caPin], {}],
      [['--server', tls, '--ca-file', authorityFile], {}],
      [[], { CAIRN_SERVER: tls, CAIRN_CA_PIN: endpoints.caPin }],
      [[], { CAIRN_SERVER: tls, CAIRN_CA_FILE: authorityFile }],
    ] as const) {
      const r = runCairn(['trust-domain', 'list', ...args], { ...e, ...extra });
      expect(r.stderr, `${args.join(' ')} ${JSON.stringify(extra)}`).toBe('');
      expect(r.stdout).toMatch(/tls\.test/);
    }
    // a write too, and the x509 mint that sends a CSR and reads back files
    expect(runCairn(['trust-domain', 'create', 'pinned.test', '--server', tls, '--ca-pin', endpoints.caPin], e).status).toBe(0);
  });

  it('refuses a wrong pin, a CA file that does not verify, and an unverifiable server; the impostor receives not a byte', async () => {
    const fake = await impostor(dir);
    try {
      const e = bare();
      const at = `https://127.0.0.1:${fake.port}`;
      const wrongPin = await runCairnAsync(['trust-domain', 'list', '--server', at, '--ca-pin', endpoints.caPin], e);
      expect(wrongPin.status).toBe(1);
      expect(wrongPin.stderr).toMatch(/^error: tls_pin_mismatch: the CA at https:\/\/127\.0\.0\.1:\d+ does not present the pinned key sha256:\S+ \(from --ca-pin\); the admin token was not sent\n$/);
      const wrongFile = await runCairnAsync(['trust-domain', 'list', '--server', at, '--ca-file', authorityFile], e);
      expect(wrongFile.status).toBe(1);
      expect(wrongFile.stderr).toMatch(/^error: tls_untrusted: cannot trust the CA at .*--ca-file .*cairn-tls-ca\.pem does not verify it/);
      const noTrust = await runCairnAsync(['trust-domain', 'list', '--server', at], e);
      expect(noTrust.status).toBe(1);
      expect(noTrust.stderr).toMatch(/^error: tls_untrusted: .*pass --ca-pin PIN/);
      const fromEnv = await runCairnAsync(['trust-domain', 'list'], { ...e, CAIRN_SERVER: at, CAIRN_CA_PIN: endpoints.caPin });
      expect(fromEnv.stderr).toMatch(/^error: tls_pin_mismatch: .*\(from CAIRN_CA_PIN\)/);
      expect(fake.handshakes()).toBeGreaterThanOrEqual(1); // the clients did connect…
      expect(fake.received()).toBe(0); // …and sent nothing, the token least of all
    } finally {
      await fake.close();
    }
    // the real CA under a pin it does not have
    const other = runCairn(['trust-domain', 'list', '--ca-pin', `sha256:${'A'.repeat(43)}`], { ...env, CAIRN_ADMIN_TOKEN: token });
    expect(other.stderr).toMatch(/^error: tls_pin_mismatch: the CA at https:\/\/127\.0\.0\.1:\d+ does not present the pinned key sha256:A{43} \(from --ca-pin\)/);
  });

  it('bad trust settings are usage errors that name the flag', () => {
    const e = bare();
    const malformed = runCairn(['trust-domain', 'list', '--server', endpoints.caTlsUrl, '--ca-pin', 'EK_layvgO'], e);
    expect(malformed.status).toBe(2);
    expect(malformed.stderr).toMatch(/--ca-pin must be sha256:<43 base64url characters>/);
    const both = runCairn(['trust-domain', 'list', '--server', endpoints.caTlsUrl, '--ca-pin', endpoints.caPin, '--ca-file', authorityFile], e);
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/--ca-pin and --ca-file are alternatives/);
    const pinOverHttp = runCairn(['trust-domain', 'list', '--server', endpoints.caUrl, '--ca-pin', endpoints.caPin], e);
    expect(pinOverHttp.status).toBe(2);
    expect(pinOverHttp.stderr).toMatch(/--ca-pin applies to an https server, but --server is http:/);
    const missingFile = runCairn(['trust-domain', 'list', '--server', endpoints.caTlsUrl, '--ca-file', join(dir, 'nope.pem')], e);
    expect(missingFile.status).toBe(2);
    expect(missingFile.stderr).toMatch(/cannot read the CA file \(--ca-file\) .*nope\.pem: ENOENT/);
    const badMode = runCairn(['ca', 'start', '--plain-admin', 'public', '--data-dir', join(dir, 'never')], e);
    expect(badMode.status).toBe(2);
    expect(badMode.stderr).toMatch(/^error: --plain-admin must be one of loopback, off \(got "public"\)/);
  });

  it('the CLI refuses to send the admin token over plain HTTP to anything but loopback, before connecting', () => {
    for (const server of ['http://192.0.2.1:8080', 'http://[2001:db8::1]:8080', 'http://ca.example.internal:8080']) {
      const r = runCairn(['trust-domain', 'list', '--server', server], bare());
      expect(r.status, server).toBe(1);
      expect(r.stderr).toMatch(/^error: tls_required: refusing to send the admin token in cleartext to http:\/\/\S+ \(--server\): plain HTTP is for loopback only/);
    }
    const fromEnv = runCairn(['trust-domain', 'list'], { ...bare(), CAIRN_SERVER: 'http://192.0.2.1:8080' });
    expect(fromEnv.stderr).toMatch(/^error: tls_required: .*\(CAIRN_SERVER\)/);
  });
});

// A CA listening on a non-loopback address and callers on it, in a private network namespace (its own
// loopback, plus 198.51.100.7 and 2001:db8::7 on it): deterministic, whatever interfaces this host has.
// The listener policy does not depend on the store, and the namespace cannot reach the test PostgreSQL
// on the host's loopback, so this runs once, on the embedded store.
describe.runIf(storeKind() === 'embedded')('the plain listener seen from a non-loopback address (network namespace)', { timeout: 300_000 }, () => {
  const ns = `cairn-at-${process.pid}-${randomBytes(3).toString('hex')}`;
  const V4 = '198.51.100.7';
  const V6 = '2001:db8::7';
  let dir: string;
  let ca: Spawned | undefined;
  let token: string;
  let pin: string;
  let authorityFile: string;

  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-admin-ns-'));
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'addr', 'add', `${V4}/32`, 'dev', 'lo');
    ip('-n', ns, 'addr', 'add', `${V6}/128`, 'dev', 'lo', 'nodad');
  });

  afterAll(async () => {
    await ca?.stop();
    try {
      ip('netns', 'del', ns);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** Starts the CA inside the namespace on [::] (dual stack: IPv4 callers appear as ::ffff:a.b.c.d). */
  const startCa = async (extra: string[], extraEnv: Record<string, string> = {}) => {
    await ca?.stop();
    ca = spawnCairn(['ca', 'start', '--data-dir', join(dir, 'ca'), '--listen', '[::]:8080', '--tls-listen', '[::]:8443', '--tls-san', V4, ...extra], { CAIRN_ADMIN_TOKEN: undefined, DATABASE_URL: undefined, CAIRN_PLAIN_ADMIN: undefined, ...extraEnv }, [], { wrapper: ['ip', 'netns', 'exec', ns] });
    await ca.waitFor(/TLS pin (sha256:[A-Za-z0-9_-]{43})/, 180_000);
    pin = /TLS pin (sha256:[A-Za-z0-9_-]{43})/.exec(ca.stdout())![1]!; // its banner, on stdout
    token = readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim();
  };

  interface Probe {
    url: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
  }
  /** Plain fetches from inside the namespace; https ones trust the CA's TLS authority (and check its name). */
  const probe = (probes: Probe[]): { status: number; body: string }[] => {
    const script = `const out = [];
for (const p of JSON.parse(process.argv[1])) {
  try { const r = await fetch(p.url, { method: p.method ?? 'GET', headers: p.headers, body: p.body }); out.push({ status: r.status, body: await r.text() }); }
  catch (e) { out.push({ status: 0, body: String(e.cause?.code ?? e.message) }); }
}
process.stdout.write(JSON.stringify(out));`;
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script, JSON.stringify(probes)], { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: authorityFile }, timeout: 60_000 });
    if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  /** The cairn CLI run inside the namespace. */
  const cairnInNs = (args: string[], env: Record<string, string | undefined> = {}) => {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], { encoding: 'utf8', env: { ...process.env, CAIRN_DATA_DIR: join(dir, 'cli'), CAIRN_SERVER: undefined, CAIRN_CA_PIN: undefined, CAIRN_CA_FILE: undefined, CAIRN_ADMIN_TOKEN: token, ...env }, timeout: 60_000 });
    registerLogSource(() => r.stderr);
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const codeOf = (body: string) => (JSON.parse(body) as { code: string }).code;
  const bearer = () => ({ authorization: `Bearer ${token}` });
  const refusals = () => (ca!.stdout() + ca!.stderr()).split('"event":"admin.plain_refused"').length - 1;
  /** The CA logs asynchronously: wait (with a generous deadline) until `n` refusals are in its output. */
  const refusalsReach = async (n: number): Promise<number> => {
    for (const deadline = Date.now() + 30_000; refusals() < n && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 50));
    return refusals();
  };

  it('loopback (default): admin routes answer loopback callers only; others get 403 tls_required, whatever headers they send', async () => {
    await startCa([]);
    // from loopback inside the namespace, the CLI over plain HTTP works (IPv4 on a dual-stack listener: ::ffff:127.0.0.1)
    const created = cairnInNs(['trust-domain', 'create', 'ns.test', '--server', 'http://127.0.0.1:8080']);
    expect(created.stderr).toBe('');
    expect(created.status).toBe(0);
    const pinned = cairnInNs(['ca', 'pin', '--json', '--server', 'http://[::1]:8080']);
    expect(JSON.parse(pinned.stdout).pin).toBe(pin);
    // the TLS authority as the listener presents it on the namespace's address; its pin is the one printed
    const chain = presentedChain(V4, 8443, ['ip', 'netns', 'exec', ns]);
    expect(opensslPin(chain.at(-1)!)).toBe(pin);
    authorityFile = join(dir, 'authority.pem');
    writeFileSync(authorityFile, chain.at(-1)!);

    const before = refusals();
    const [v4, v4Forged, v4Post, v6, v4NoToken, loop4, loop6] = probe([
      { url: `http://${V4}:8080/v1/trust-domains`, headers: bearer() },
      { url: `http://${V4}:8080/v1/trust-domains`, headers: { ...bearer(), 'x-forwarded-for': '127.0.0.1', 'x-real-ip': '127.0.0.1', forwarded: 'for=127.0.0.1' } },
      { url: `http://${V4}:8080/v1/trust-domains`, method: 'POST', headers: { ...bearer(), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'leak.test' }) },
      { url: `http://[${V6}]:8080/v1/trust-domains`, headers: bearer() },
      { url: `http://${V4}:8080/v1/trust-domains` },
      { url: 'http://127.0.0.1:8080/v1/trust-domains', headers: bearer() },
      { url: 'http://[::1]:8080/v1/trust-domains', headers: bearer() },
    ]);
    for (const r of [v4, v4Forged, v4Post, v6, v4NoToken]) {
      expect(r!.status).toBe(403);
      expect(codeOf(r!.body)).toBe('tls_required');
      expect(JSON.parse(r!.body).message).toMatch(/only to loopback callers: use the TLS listener https:\/\/\S+:8443/);
    }
    expect(loop4!.status).toBe(200);
    expect(loop6!.status).toBe(200);
    expect(await refusalsReach(before + 5)).toBe(before + 5);
    // the refused POST never ran
    expect(JSON.parse(loop4!.body).trustDomains.map((t: { name: string }) => t.name)).toEqual(['ns.test']);

    // the public documents on both listeners, from the non-loopback address
    const pub = probe(['/td/ns.test/bundle', '/td/ns.test/bundle.pem', '/td/ns.test/jwks', '/healthz', '/readyz'].flatMap((p) => [{ url: `http://${V4}:8080${p}` }, { url: `https://${V4}:8443${p}` }]));
    for (const r of pub) expect(r.status, r.body).toBe(200);
    // and the admin API over TLS from there, with the pin
    const overTls = cairnInNs(['trust-domain', 'list', '--server', `https://${V4}:8443`, '--ca-pin', pin]);
    expect(overTls.stderr).toBe('');
    expect(overTls.stdout).toMatch(/ns\.test/);
    // the CLI itself will not send the token in clear to that address: no request reaches the CA
    const plainCli = cairnInNs(['trust-domain', 'list', '--server', `http://${V4}:8080`]);
    expect(plainCli.status).toBe(1);
    expect(plainCli.stderr).toMatch(/^error: tls_required: refusing to send the admin token in cleartext/);
    // one more refused request as a marker: its log line comes after any the CLI could have caused
    expect(probe([{ url: `http://${V4}:8080/v1/entries` }])[0]!.status).toBe(403);
    expect(await refusalsReach(before + 6)).toBe(before + 6);
  });

  it('off (CAIRN_PLAIN_ADMIN=off): loopback callers are refused too; public documents and TLS admin still work', async () => {
    await startCa([], { CAIRN_PLAIN_ADMIN: 'off' });
    const [loop4, loop6, bundle] = probe([
      { url: 'http://127.0.0.1:8080/v1/trust-domains', headers: bearer() },
      { url: 'http://[::1]:8080/v1/trust-domains', headers: bearer() },
      { url: `http://${V4}:8080/td/ns.test/bundle` },
    ]);
    for (const r of [loop4, loop6]) {
      expect(r!.status).toBe(403);
      expect(JSON.parse(r!.body).message).toMatch(/no admin routes over plain HTTP \(--plain-admin off\)/);
    }
    expect(bundle!.status).toBe(200);
    const cli = cairnInNs(['trust-domain', 'list', '--server', 'http://127.0.0.1:8080']);
    expect(cli.status).toBe(1);
    expect(cli.stderr).toMatch(/^error: tls_required: this CA serves no admin routes over plain HTTP/);
    const overTls = cairnInNs(['trust-domain', 'list', '--server', 'https://127.0.0.1:8443', '--ca-pin', pin]);
    expect(overTls.stdout).toMatch(/ns\.test/);
  });
});

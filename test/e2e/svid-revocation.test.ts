import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import { startCaOnTestStore, type CaProcess } from '../support/ca-process.js';
import { storeKind } from '../support/db.js';
import { grpcWorkloadClient, securityHeader, type grpc, type X509SvidWire } from '../support/grpc-workload.js';
import { freePort, runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const TD = 'revoke-e2e.test';
const hasNginx = existsSync('/usr/sbin/nginx');

interface X509Message {
  svids: X509SvidWire[];
  crl: Buffer[];
}

const serialOf = (pem: string | Buffer): string => new X509Certificate(pem).serialNumber.toLowerCase();
const crlText = (der: Buffer): string => execFileSync('openssl', ['crl', '-inform', 'DER', '-noout', '-text'], { input: der, encoding: 'utf8' });
const lists = (crlDerOrText: string, serial: string): boolean => crlDerOrText.includes(`Serial Number: ${serial.toUpperCase()}`);

function opensslCrlCheck(dir: string, leafPem: string): { ok: boolean; out: string } {
  writeFileSync(join(dir, 'check.pem'), leafPem);
  try {
    const out = execFileSync('openssl', ['verify', '-crl_check', '-CAfile', join(dir, 'id', 'bundle.pem'), '-CRLfile', join(dir, 'id', 'crl.pem'), join(dir, 'check.pem')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { ok: true, out };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe(`a revoked SVID: replaced on the open stream, refused by openssl and nginx with the CRL (${storeKind()} store, real processes)`, () => {
  let dir: string;
  let ca: (CaProcess & { close(): Promise<void> }) | undefined;
  let agent: Spawned | undefined;
  let watch: Spawned | undefined;
  let nginx: ChildProcess | undefined;
  let stream: grpc.ClientReadableStream<X509Message> | undefined;
  const messages: X509Message[] = [];
  const socket = () => join(dir, 'agent.sock');
  const adminEnv = () => ({ CAIRN_ADMIN_TOKEN: undefined, CAIRN_ADMIN_TOKEN_FILE: join(dir, 'ca', 'admin-token'), CAIRN_SERVER: ca!.httpUrl, CAIRN_DATA_DIR: undefined });
  let agentId = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-revoke-e2e-'));
    chmodSync(dir, 0o755);
    ca = await startCaOnTestStore(join(dir, 'ca'));
    expect((await ca.admin('/v1/trust-domains', { name: TD })).status).toBe(201);
    const tok = await ca.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: TD });
    agentId = tok.body.spiffeId;
    expect((await ca.admin('/v1/entries', { spiffeId: `spiffe://${TD}/web`, parentId: agentId, selectors: [`unix:uid:${process.getuid!()}`] })).status).toBe(201);
    writeFileSync(join(dir, 'join-token'), tok.body.token, { mode: 0o600 });
    agent = spawnCairn(['agent', 'start', '--data-dir', join(dir, 'agent'), '--socket', socket(), '--join-token-file', join(dir, 'join-token')], { CAIRN_JOIN_TOKEN: undefined, CAIRN_AGENT_SOCKET: undefined, CAIRN_DATA_DIR: undefined });
    await agent.waitFor(/serving the Workload API/, 90_000);
    // synced and holding the workload's SVID
    await waitFor('the workload SVID', async () => ((await runCairnAsync(['svid', 'fetch', '--socket', `unix://${socket()}`], { CAIRN_DATA_DIR: undefined })).status === 0 ? true : undefined), 90_000);
  }, 180_000);

  afterAll(async () => {
    stream?.cancel();
    nginx?.kill('SIGTERM');
    await watch?.stop();
    await agent?.stop();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the Workload API carries the CRL (independent gRPC client) and svid watch writes crl.pem', async () => {
    const client = grpcWorkloadClient(socket());
    stream = client.FetchX509SVID!({}, securityHeader()) as grpc.ClientReadableStream<X509Message>;
    stream.on('data', (m: X509Message) => messages.push(m));
    let failure = '';
    stream.on('error', (e: Error) => (failure = e.message));
    const first = await waitFor(`the first X509SVIDResponse (${failure})`, () => {
      if (failure) throw new Error(`FetchX509SVID failed: ${failure}`);
      return messages[0];
    }, 60_000);
    expect(first.crl.length).toBeGreaterThan(0);
    const bundle = splitDerCertificates(first.svids[0]!.bundle).map((d) => derToPem(d)).join('');
    writeFileSync(join(dir, 'bundle-check.pem'), bundle);
    // the CRL verifies against the trust domain's CA (openssl checks the signature)
    writeFileSync(join(dir, 'crl-check.der'), first.crl[0]!);
    execFileSync('openssl', ['crl', '-inform', 'DER', '-in', join(dir, 'crl-check.der'), '-CAfile', join(dir, 'bundle-check.pem'), '-noout'], { stdio: 'pipe' });

    watch = spawnCairn(['svid', 'watch', '--write', join(dir, 'id'), '--socket', `unix://${socket()}`], { CAIRN_DATA_DIR: undefined });
    await waitFor('svid watch to write its files', () => existsSync(join(dir, 'id', 'crl.pem')) && existsSync(join(dir, 'id', 'svid.pem')) || undefined, 60_000);
    const written = readFileSync(join(dir, 'id', 'crl.pem'), 'utf8');
    expect(written).toBe(first.crl.map((c) => derToPem(c, 'X509 CRL')).join(''));
  }, 120_000);

  it('cairn svid revoke: the open stream gets a replacement, the CRL lists the old serial, openssl verify -crl_check and nginx ssl_crl refuse it and accept the new one', async () => {
    const held = messages.at(-1)!.svids[0]!;
    const oldChain = splitDerCertificates(held.x509_svid).map((d) => derToPem(d)).join('');
    const oldKey = derToPem(held.x509_svid_key, 'PRIVATE KEY');
    const oldSerial = serialOf(oldChain);

    // CLI mistakes name the flags as typed
    const neither = await runCairnAsync(['svid', 'revoke'], adminEnv());
    expect(neither.status).toBe(2);
    expect(neither.stderr).toMatch(/^error: svid revoke needs --serial HEX .* or --spiffe-id ID/m);
    const badSerial = await runCairnAsync(['svid', 'revoke', '--serial', 'xyz'], adminEnv());
    expect(badSerial.status).toBe(2);
    expect(badSerial.stderr).toMatch(/^error: --serial/m);
    const unknown = await runCairnAsync(['svid', 'revoke', '--serial', 'abcdef12'], adminEnv());
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/^error: svid_not_found: /m);

    const seen = messages.length;
    const started = Date.now();
    const revoked = await runCairnAsync(['svid', 'revoke', '--serial', oldSerial, '--reason', 'e2e: key leaked'], adminEnv());
    expect(revoked.stderr).toMatch(/revoked 1 X\.509-SVID/);
    expect(revoked.status).toBe(0);
    expect(revoked.stdout).toContain(oldSerial);

    // the workload's open stream receives a new SVID, with a CRL that lists the old one
    const replaced = await waitFor('a replacement SVID on the open stream', () => messages.slice(seen).find((m) => serialOf(splitDerCertificates(m.svids[0]!.x509_svid)[0]!) !== oldSerial), 30_000);
    const replacedInMs = Date.now() - started;
    console.log(`revoke → replacement on the open Workload API stream: ${replacedInMs} ms`);
    const newChain = splitDerCertificates(replaced.svids[0]!.x509_svid).map((d) => derToPem(d)).join('');
    const newKey = derToPem(replaced.svids[0]!.x509_svid_key, 'PRIVATE KEY');
    const latest = await waitFor('a CRL listing the revoked serial on the stream', () => messages.slice(seen).find((m) => m.crl.some((c) => lists(crlText(c), oldSerial))), 30_000);
    expect(latest.crl.length).toBeGreaterThan(0);

    // svid watch rewrote its files: the new SVID and a crl.pem listing the old serial
    await waitFor('svid watch to write the new SVID and CRL', () => {
      const svid = readFileSync(join(dir, 'id', 'svid.pem'), 'utf8');
      const crl = readFileSync(join(dir, 'id', 'crl.pem'), 'utf8');
      return serialOf(svid) !== oldSerial && crl.includes('X509 CRL') && lists(execFileSync('openssl', ['crl', '-noout', '-text'], { input: crl, encoding: 'utf8' }), oldSerial) ? true : undefined;
    }, 30_000);

    // openssl verify -crl_check with the files svid watch wrote
    const refused = opensslCrlCheck(dir, oldChain);
    expect(refused.ok).toBe(false);
    expect(refused.out).toMatch(/certificate revoked/);
    expect(opensslCrlCheck(dir, newChain).ok).toBe(true);

    if (!hasNginx) throw new Error('nginx is not installed (apt-get install nginx-light): the ssl_crl proof needs it');
    const port = await freePort();
    const ng = join(dir, 'nginx');
    mkdirSync(join(ng, 'logs'), { recursive: true });
    writeFileSync(join(dir, 'old.pem'), oldChain);
    writeFileSync(join(dir, 'old.key'), oldKey, { mode: 0o600 });
    writeFileSync(join(dir, 'new.pem'), newChain);
    writeFileSync(join(dir, 'new.key'), newKey, { mode: 0o600 });
    writeFileSync(join(ng, 'nginx.conf'), `
daemon off;
master_process off;
pid ${join(ng, 'nginx.pid')};
error_log ${join(ng, 'logs', 'error.log')} info;
events {}
http {
  access_log off;
  client_body_temp_path ${ng}/body; proxy_temp_path ${ng}/proxy; fastcgi_temp_path ${ng}/fastcgi; uwsgi_temp_path ${ng}/uwsgi; scgi_temp_path ${ng}/scgi;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${join(dir, 'id', 'svid.pem')};
    ssl_certificate_key ${join(dir, 'id', 'svid.key')};
    ssl_client_certificate ${join(dir, 'id', 'bundle.pem')};
    ssl_verify_client on;
    ssl_crl ${join(dir, 'id', 'crl.pem')};
    location / { return 200 "hello $ssl_client_serial\\n"; }
  }
}
`);
    nginx = spawn('/usr/sbin/nginx', ['-p', ng, '-c', join(ng, 'nginx.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let nginxOut = '';
    nginx.stderr!.on('data', (d: Buffer) => (nginxOut += d.toString()));
    const curl = (cert: string, key: string): { code: string; body: string } => {
      try {
        const out = execFileSync('curl', ['-sk', '--max-time', '10', '--cert', cert, '--key', key, '-w', '\n%{http_code}', `https://127.0.0.1:${port}/`], { encoding: 'utf8' });
        const lines = out.trimEnd().split('\n');
        return { code: lines.at(-1)!, body: lines.slice(0, -1).join('\n') };
      } catch (err) {
        return { code: 'failed', body: (err as Error).message };
      }
    };
    const ok = await waitFor(`nginx to answer (${nginxOut})`, () => {
      const r = curl(join(dir, 'new.pem'), join(dir, 'new.key'));
      return r.code === '200' ? r : undefined;
    }, 30_000);
    expect(ok.body.toLowerCase()).toContain(`hello ${serialOf(newChain)}`);
    const denied = curl(join(dir, 'old.pem'), join(dir, 'old.key'));
    expect(denied.code).toBe('400'); // nginx: "The SSL certificate error"
    expect(readFileSync(join(ng, 'logs', 'error.log'), 'utf8')).toMatch(/certificate revoked/);
  }, 180_000);

  it('a revoked device: cairn renew fails with svid_revoked telling the operator to bootstrap again', async () => {
    const dev = join(dir, 'device');
    const tok = await ca!.admin<{ token: string }>('/v1/tokens', { trustDomain: TD, spiffeId: `spiffe://${TD}/device/1` });
    const boot = await runCairnAsync(['bootstrap', '--token', tok.body.token, '--write', dev], { CAIRN_DATA_DIR: undefined });
    expect(boot.status).toBe(0);
    expect((await runCairnAsync(['renew', '--dir', dev], { CAIRN_DATA_DIR: undefined })).status).toBe(0);
    const r = await runCairnAsync(['svid', 'revoke', '--spiffe-id', `spiffe://${TD}/device/1`, '--reason', 'stolen'], adminEnv());
    expect(r.status).toBe(0);
    const renew = await runCairnAsync(['renew', '--dir', dev], { CAIRN_DATA_DIR: undefined });
    expect(renew.status, renew.stderr).toBe(1);
    expect(renew.stderr).toMatch(/^error: svid_revoked: the SVID [0-9a-f]+ of spiffe:\/\/revoke-e2e\.test\/device\/1 has been revoked and cannot be renewed: bootstrap the device again/m);
  }, 120_000);

  it("revoking the agent's own SVID: the join-token agent stops with one clear error line", async () => {
    const nodes = await ca!.admin<{ agents: { spiffeId: string; serial: string }[] }>(`/v1/agents?trustDomain=${TD}`);
    const serial = nodes.body.agents.find((n) => n.spiffeId === agentId)!.serial;
    const r = await runCairnAsync(['svid', 'revoke', '--serial', serial], adminEnv());
    expect(r.status).toBe(0);
    const hung = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 90_000).unref());
    const status = await Promise.race([agent!.exited, hung]);
    expect(status).toBe(1);
    expect(agent!.stderr()).toMatch(/^error: the CA no longer accepts this agent's SVID \(.*svid_revoked; its SVID was revoked\): start the agent with a new join token/m);
  }, 120_000);
});

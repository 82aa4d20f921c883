import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaOnTestStore, type CaProcess } from '../support/ca-process.js';
import { storeKind } from '../support/db.js';
import {
  ENVOY_PROTO_DIRS, fetchSecrets, grpc, pemOf, Recorder, sdsClient, SECRET_TYPE, SPIFFE_VALIDATOR_TYPE,
  type DeltaRequestWire, type DeltaResponseWire, type DiscoveryRequestWire, type DiscoveryResponseWire, type SdsClient, type SecretWire,
} from '../support/envoy-sds.js';
import { opensslVerify } from '../support/openssl.js';
import { freePort, runCairnAsync, spawnCairn, waitForOutput, type Spawned } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

/**
 * Issue 16's proof for Envoy SDS, with real processes: `cairn ca start` on this run's store and
 * `cairn agent start` serving SDS on its Workload API socket; the client is @grpc/grpc-js with
 * Envoy's official protos (test/support/envoy-sds.ts), never our generated code. Rotations are
 * forced with `cairn svid revoke` and bundle changes with `cairn authority prepare`.
 */

const TD = 'sds-e2e.test';
const require = createRequire(import.meta.url);
const isRoot = process.getuid?.() === 0;
const OTHER_UID = 3141;
const NOBODY_UID = 3142;
const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toLowerCase();
const uriOf = (pem: string): string => new X509Certificate(pem).subjectAltName ?? '';
const byName = (m: { resources: SecretWire[] }, name: string): SecretWire | undefined => m.resources.find((r) => r.name === name);


/** FetchSecrets from a child process running under another uid (the kernel, not the request, says who calls). */
function fetchAsUid(socketPath: string, uid: number, names: string[]): Promise<string> {
  const script = `
    const grpc=require(${JSON.stringify(require.resolve('@grpc/grpc-js'))});
    const pl=require(${JSON.stringify(require.resolve('@grpc/proto-loader'))});
    const d=pl.loadSync(['envoy/service/secret/v3/sds.proto','envoy/extensions/transport_sockets/tls/v3/secret.proto'],{keepCase:true,json:true,includeDirs:${JSON.stringify(ENVOY_PROTO_DIRS)}});
    const p=grpc.loadPackageDefinition(d);
    const c=new p.envoy.service.secret.v3.SecretDiscoveryService(${JSON.stringify(`unix://${socketPath}`)},grpc.credentials.createInsecure());
    c.FetchSecrets({resource_names:${JSON.stringify(names)},type_url:${JSON.stringify(SECRET_TYPE)}},(e,r)=>{
      if(e){console.log('ERR '+e.code);process.exit(0)}
      const x=require('node:crypto');
      console.log('DATA '+r.resources.map(s=>s.name+'='+(s.tls_certificate?new x.X509Certificate(s.tls_certificate.certificate_chain.inline_bytes).subjectAltName:'bundle')).join(','));process.exit(0)});`;
  return new Promise<string>((resolve) => {
    const child = spawn('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.on('exit', () => resolve(text.trim()));
  });
}

describe(`Envoy SDS on the agent socket (${storeKind()} store, real processes, Envoy's official protos)`, () => {
  let dir: string;
  let ca: (CaProcess & { close(): Promise<void> }) | undefined;
  let agent: Spawned | undefined;
  let client: SdsClient;
  const streams: { cancel(): void }[] = [];
  const socket = () => join(dir, 'agent.sock');
  const cliEnv = () => ({ CAIRN_ADMIN_TOKEN: undefined, CAIRN_ADMIN_TOKEN_FILE: join(dir, 'ca', 'admin-token'), CAIRN_SERVER: ca!.httpUrl, CAIRN_DATA_DIR: undefined });
  const cairn = (...args: string[]) => runCairnAsync(args, cliEnv());
  const uid = process.getuid!();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-sds-e2e-'));
    chmodSync(dir, 0o755);
    ca = await startCaOnTestStore(join(dir, 'ca'));
    expect((await ca.admin('/v1/trust-domains', { name: TD })).status).toBe(201);
    const tok = await ca.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: TD });
    const entry = async (path: string, selectors: string[]) => expect((await ca!.admin('/v1/entries', { spiffeId: `spiffe://${TD}/${path}`, parentId: tok.body.spiffeId, selectors })).status).toBe(201);
    await entry('frontend', [`unix:uid:${uid}`]);
    await entry('backend', [`unix:uid:${uid}`]);
    await entry('other', [`unix:uid:${OTHER_UID}`]);
    writeFileSync(join(dir, 'join-token'), tok.body.token, { mode: 0o600 });
    agent = spawnCairn(['agent', 'start', '--data-dir', join(dir, 'agent'), '--socket', socket(), '--join-token-file', join(dir, 'join-token')], { CAIRN_JOIN_TOKEN: undefined, CAIRN_AGENT_SOCKET: undefined, CAIRN_DATA_DIR: undefined });
    await agent.waitFor(/serving the Workload API/, 90_000);
    client = sdsClient(socket());
    // synced and holding both SVIDs of this uid
    await waitFor('both SVIDs over SDS', async () => {
      try {
        const all = await fetchSecrets(client, { resource_names: [] });
        return all.resources.filter((r) => r.tls_certificate).length === 2 ? true : undefined;
      } catch {
        return undefined;
      }
    }, 90_000);
  }, 180_000);

  afterAll(async () => {
    for (const s of streams) s.cancel();
    client?.close();
    await agent?.stop();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const open = (): { call: grpc.ClientDuplexStream<DiscoveryRequestWire, DiscoveryResponseWire>; rec: Recorder<DiscoveryResponseWire> } => {
    const call = client.StreamSecrets();
    streams.push(call);
    return { call, rec: new Recorder(call) };
  };

  it('FetchSecrets: default is a tls_certificate (PEM chain + PKCS#8 key), ROOTCA a trusted_ca bundle that verifies it (openssl)', async () => {
    const res = await fetchSecrets(client, { node: { id: 'sidecar-1' }, resource_names: ['default', 'ROOTCA'], type_url: SECRET_TYPE });
    expect(res.type_url).toBe(SECRET_TYPE);
    expect(res.resources.map((r) => [r['@type'], r.name])).toEqual([[SECRET_TYPE, 'default'], [SECRET_TYPE, 'ROOTCA']]);
    const tls = byName(res, 'default')!.tls_certificate!;
    const chain = pemOf(tls.certificate_chain);
    const key = pemOf(tls.private_key);
    expect(chain).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(uriOf(chain)).toMatch(new RegExp(`URI:spiffe://${TD}/(frontend|backend)$`));
    const bundle = pemOf(byName(res, 'ROOTCA')!.validation_context!.trusted_ca);
    expect(bundle).toContain('-----BEGIN CERTIFICATE-----');
    expect(opensslVerify(chain, bundle)).toMatch(/OK/);
    // the key is the certificate's
    const { createPrivateKey, createPublicKey } = await import('node:crypto');
    expect(createPublicKey(createPrivateKey(key)).export({ format: 'der', type: 'spki' })).toEqual(new X509Certificate(chain).publicKey.export({ format: 'der', type: 'spki' }));
    // spiffe://<td> names the same bundle; an empty list is everything the caller may have (SPIRE)
    const td = await fetchSecrets(client, { resource_names: [`spiffe://${TD}`] });
    expect(pemOf(td.resources[0]!.validation_context!.trusted_ca)).toBe(bundle);
    const all = await fetchSecrets(client, { resource_names: [] });
    expect(all.resources.map((r) => r.name).sort()).toEqual([`spiffe://${TD}`, `spiffe://${TD}/backend`, `spiffe://${TD}/frontend`]);
  });

  it('the SVIDs of default and of a SPIFFE ID name complete an openssl s_server / s_client mTLS handshake against ROOTCA', async () => {
    const res = await fetchSecrets(client, { resource_names: ['default', 'ROOTCA'] });
    const serverChain = pemOf(byName(res, 'default')!.tls_certificate!.certificate_chain);
    const serverId = uriOf(serverChain).replace(/^URI:/, '');
    const peerId = serverId.endsWith('/frontend') ? `spiffe://${TD}/backend` : `spiffe://${TD}/frontend`;
    const peer = await fetchSecrets(client, { resource_names: [peerId] });
    expect(peer.resources.map((r) => r.name)).toEqual([peerId]);
    const files = mkdtempSync(join(tmpdir(), 'cairn-sds-mtls-'));
    const write = (name: string, text: string): string => {
      writeFileSync(join(files, name), text, { mode: 0o600 });
      return join(files, name);
    };
    const sCert = write('s.pem', serverChain);
    const sKey = write('s.key', pemOf(byName(res, 'default')!.tls_certificate!.private_key));
    const cCert = write('c.pem', pemOf(peer.resources[0]!.tls_certificate!.certificate_chain));
    const cKey = write('c.key', pemOf(peer.resources[0]!.tls_certificate!.private_key));
    const bundle = write('bundle.pem', pemOf(byName(res, 'ROOTCA')!.validation_context!.trusted_ca));
    const port = await freePort();
    const s = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', sCert, '-key', sKey, '-CAfile', bundle, '-Verify', '1', '-verify_return_error', '-naccept', '1'], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      await waitForOutput(s, /ACCEPT/);
      const serverLog = waitForOutput(s, /hello over SDS/);
      const c = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', cCert, '-key', cKey, '-CAfile', bundle, '-verify_return_error', '-ign_eof'], { stdio: ['pipe', 'pipe', 'pipe'] });
      const clientLog = waitForOutput(c, /Verify return code: 0 \(ok\)/);
      c.stdin!.write('hello over SDS\n');
      const [cl, sl] = await Promise.all([clientLog, serverLog]);
      c.kill();
      expect(cl).toContain('Verify return code: 0 (ok)');
      expect(sl).toMatch(/verify return:1/);
      // the client certificate s_server verified is the SVID served under the SPIFFE ID name
      const presented = /Client certificate\n(-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----)/.exec(sl)?.[1];
      expect(uriOf(presented!)).toBe(`URI:${peerId}`);
    } finally {
      s.kill();
      rmSync(files, { recursive: true, force: true });
    }
  });

  it('StreamSecrets: version_info and nonce per response; an ACK gets nothing; a revoked SVID is replaced on the open stream', { timeout: 90_000 }, async () => {
    const { call, rec } = open();
    call.write({ node: { id: 'sidecar-1', cluster: 'web' }, resource_names: ['default', 'ROOTCA'], type_url: SECRET_TYPE });
    const first = await rec.next(0);
    expect(first.type_url).toBe(SECRET_TYPE);
    expect(first.version_info).toBe('1');
    expect(first.nonce).toMatch(/^[0-9a-f]{16}$/);
    expect(first.resources.map((r) => r.name)).toEqual(['default', 'ROOTCA']);
    call.write({ version_info: first.version_info, resource_names: ['default', 'ROOTCA'], type_url: SECRET_TYPE, response_nonce: first.nonce }); // ACK
    const oldChain = pemOf(byName(first, 'default')!.tls_certificate!.certificate_chain);
    const oldSerial = serialOf(oldChain);
    const started = Date.now();
    const revoked = await cairn('svid', 'revoke', '--serial', oldSerial, '--reason', 'sds e2e');
    expect(revoked.status, revoked.stderr).toBe(0);
    const rotated = await rec.next(1, (m) => serialOf(pemOf(byName(m, 'default')!.tls_certificate!.certificate_chain)) !== oldSerial, 60_000);
    console.log(`revoke → replacement on the open SDS stream: ${Date.now() - started} ms`);
    // the ACK was answered by nothing: the next response is the rotation, version 2 with a new nonce
    expect(rec.messages.indexOf(rotated)).toBe(1);
    expect(rotated.version_info).toBe('2');
    expect(rotated.nonce).not.toBe(first.nonce);
    const newChain = pemOf(byName(rotated, 'default')!.tls_certificate!.certificate_chain);
    expect(uriOf(newChain)).toBe(uriOf(oldChain));
    expect(opensslVerify(newChain, pemOf(byName(rotated, 'ROOTCA')!.validation_context!.trusted_ca))).toMatch(/OK/);
    call.write({ version_info: rotated.version_info, resource_names: ['default', 'ROOTCA'], type_url: SECRET_TYPE, response_nonce: rotated.nonce });
    call.end();
  });

  it('a NACK is logged once and not answered with the same secrets; a new name on the stream is answered; a stale nonce is ignored', { timeout: 60_000 }, async () => {
    const { call, rec } = open();
    call.write({ node: { id: 'nacking-sidecar' }, resource_names: ['default'], type_url: SECRET_TYPE });
    const first = await rec.next(0);
    // NACK: the previous version ('' — none applied), the nonce of the rejected response, error_detail
    for (let i = 0; i < 3; i++) call.write({ version_info: '', resource_names: ['default'], type_url: SECRET_TYPE, response_nonce: first.nonce, error_detail: { code: 3, message: 'sidecar says: bad key' } });
    // a request with a stale nonce, even with new names, is ignored
    call.write({ version_info: '', resource_names: ['default', 'ALL'], type_url: SECRET_TYPE, response_nonce: 'not-a-nonce-we-sent' });
    // then a real change of names: answered at once, and it is the very next message (nothing resent in between)
    call.write({ version_info: '', resource_names: ['default', 'ROOTCA'], type_url: SECRET_TYPE, response_nonce: first.nonce });
    const next = await rec.next(1);
    expect(rec.messages.indexOf(next)).toBe(1);
    expect(next.resources.map((r) => r.name)).toEqual(['default', 'ROOTCA']);
    expect(next.version_info).toBe('2');
    await agent!.waitFor(/"event":"sds\.nack".*"node":"nacking-sidecar".*sidecar says: bad key/, 15_000);
    expect(agent!.stderr().match(/"node":"nacking-sidecar"/g)?.length).toBe(1);
    expect(agent!.stderr()).not.toContain('BEGIN PRIVATE KEY');
    call.end();
  });

  it('a SPIFFE ID the caller is not entitled to is not served (InvalidArgument, as SPIRE), on Fetch and on the stream', async () => {
    for (const names of [[`spiffe://${TD}/other`], ['default', `spiffe://${TD}/other`], ['spiffe://evil.test'], ['spiffe://evil.test/x']]) {
      const err = await fetchSecrets(client, { resource_names: names }).then(() => undefined, (e: grpc.ServiceError) => e);
      expect(err?.code, names.join()).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err!.details).toContain('workload is not authorized for the requested identities');
      expect(err!.details).not.toContain('BEGIN');
    }
    const { call, rec } = open();
    call.write({ resource_names: [`spiffe://${TD}/other`], type_url: SECRET_TYPE });
    const failure = await rec.failure();
    expect(failure.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(rec.messages).toEqual([]);
    const wrongType = await fetchSecrets(client, { resource_names: ['default'], type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster' }).then(() => undefined, (e: grpc.ServiceError) => e);
    expect(wrongType?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it.runIf(isRoot)('the caller is who the kernel says: another uid gets its own default and cannot name ours; a uid without identity gets PermissionDenied', async () => {
    expect(await fetchAsUid(socket(), OTHER_UID, ['default'])).toBe(`DATA default=URI:spiffe://${TD}/other`);
    expect(await fetchAsUid(socket(), OTHER_UID, [`spiffe://${TD}/frontend`])).toBe(`ERR ${grpc.status.INVALID_ARGUMENT}`);
    expect(await fetchAsUid(socket(), NOBODY_UID, ['ROOTCA'])).toBe(`ERR ${grpc.status.PERMISSION_DENIED}`);
  });

  it('ALL is a validation context for Envoy\'s SPIFFE certificate validator with each trust domain\'s bundle', async () => {
    const res = await fetchSecrets(client, { resource_names: ['ALL', 'ROOTCA'] });
    const all = byName(res, 'ALL')!.validation_context!;
    expect(all.trusted_ca).toBeFalsy();
    expect(all.custom_validator_config!.name).toBe('envoy.tls.cert_validator.spiffe');
    const config = all.custom_validator_config!.typed_config!;
    expect(config['@type']).toBe(SPIFFE_VALIDATOR_TYPE);
    expect(config.trust_domains!.map((t) => t.name)).toEqual([TD]);
    expect(pemOf(config.trust_domains![0]!.trust_bundle)).toBe(pemOf(byName(res, 'ROOTCA')!.validation_context!.trusted_ca));
  });

  it('DeltaSecrets: subscribe/unsubscribe, per-resource versions, removed_resources for a name the caller may not have, rotation pushed as a delta', { timeout: 90_000 }, async () => {
    const call = client.DeltaSecrets();
    streams.push(call);
    const rec = new Recorder<DeltaResponseWire>(call);
    const send = (m: DeltaRequestWire): boolean => call.write({ type_url: SECRET_TYPE, ...m });
    send({ node: { id: 'delta-sidecar' }, resource_names_subscribe: ['default', 'ROOTCA', `spiffe://${TD}/other`] });
    const first = await rec.next(0);
    expect(first.type_url).toBe(SECRET_TYPE);
    expect(first.nonce).toMatch(/^[0-9a-f]{16}$/);
    expect(first.resources.map((r) => r.name).sort()).toEqual(['ROOTCA', 'default']);
    for (const r of first.resources) {
      expect(r.resource['@type']).toBe(SECRET_TYPE);
      expect(r.resource.name).toBe(r.name);
      expect(r.version).not.toBe('');
    }
    expect(first.removed_resources).toEqual([`spiffe://${TD}/other`]);
    send({ response_nonce: first.nonce }); // ACK
    // a new subscription gets only the new resource
    send({ response_nonce: first.nonce, resource_names_subscribe: ['ALL'], resource_names_unsubscribe: ['ROOTCA'] });
    const second = await rec.next(1);
    expect(second.resources.map((r) => r.name)).toEqual(['ALL']);
    expect(second.removed_resources ?? []).toEqual([]);
    send({ response_nonce: second.nonce });
    const held = first.resources.find((r) => r.name === 'default')!;
    const oldSerial = serialOf(pemOf(held.resource.tls_certificate!.certificate_chain));
    expect((await cairn('svid', 'revoke', '--serial', oldSerial, '--reason', 'sds delta e2e')).status).toBe(0);
    const rotated = await rec.next(2, (m) => m.resources.some((r) => r.name === 'default'), 60_000);
    expect(rotated.resources.map((r) => r.name)).toEqual(['default']); // ALL did not change, ROOTCA is unsubscribed
    const fresh = rotated.resources[0]!;
    expect(fresh.version).not.toBe(held.version);
    expect(serialOf(pemOf(fresh.resource.tls_certificate!.certificate_chain))).not.toBe(oldSerial);
    // a reconnecting client that says which versions it holds gets only what changed since
    const call2 = client.DeltaSecrets();
    streams.push(call2);
    const rec2 = new Recorder<DeltaResponseWire>(call2);
    call2.write({ type_url: SECRET_TYPE, resource_names_subscribe: ['default', 'ALL'], initial_resource_versions: { default: fresh.version, ALL: 'stale-version' } });
    const resumed = await rec2.next(0);
    expect(resumed.resources.map((r) => r.name)).toEqual(['ALL']);
    call.end();
    call2.end();
  });

  it('a bundle change (cairn authority prepare) is pushed to ROOTCA on the open stream', { timeout: 90_000 }, async () => {
    const { call, rec } = open();
    call.write({ resource_names: ['ROOTCA'], type_url: SECRET_TYPE });
    const first = await rec.next(0);
    const count = (m: DiscoveryResponseWire): number => (pemOf(byName(m, 'ROOTCA')!.validation_context!.trusted_ca).match(/BEGIN CERTIFICATE/g) ?? []).length;
    call.write({ version_info: first.version_info, resource_names: ['ROOTCA'], type_url: SECRET_TYPE, response_nonce: first.nonce });
    const prepared = await cairn('authority', 'prepare', '--trust-domain', TD, '--kind', 'x509');
    expect(prepared.status, prepared.stderr).toBe(0);
    const grown = await rec.next(1, (m) => count(m) > count(first), 60_000);
    expect(grown.version_info).toBe(String(Number(first.version_info) + 1));
    call.end();
  });
});

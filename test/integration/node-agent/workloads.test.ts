import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { derToPem } from '../../../spiffe/bundle/bundle.js';
import { splitDerCertificates } from '../../../spiffe/svid/x509.js';
import { startAgent, type AgentHandle } from '../../../node-agent/main.js';
import { WorkloadApiClient, WorkloadApiError, x509Pem } from '../../../workload-api/client.js';
import { startTestCa, type TestCa } from '../../support/ca.js';
import { storeKind } from '../../support/db.js';
import { fetchAsUid, firstMessage, grpc, grpcWorkloadClient, securityHeader, unary, type X509SvidWire } from '../../support/grpc-workload.js';
import { freePort, waitForOutput } from '../../support/processes.js';
import { capturingLogger } from '../../support/logs.js';
import { FakeClock } from '../../support/clock.js';
import { opensslVerify } from '../../support/openssl.js';

const TD = 'wl.test';
const isRoot = process.getuid?.() === 0;

/** The complete X.509 state a FetchX509SVID stream sends, as PEM. */
function pemOf(svid: X509SvidWire): { chain: string; key: string; bundle: string; serial: string } {
  const certs = splitDerCertificates(svid.x509_svid);
  return {
    chain: certs.map((d) => derToPem(d)).join(''),
    key: derToPem(svid.x509_svid_key, 'PRIVATE KEY'),
    bundle: splitDerCertificates(svid.bundle).map((d) => derToPem(d)).join(''),
    serial: new X509Certificate(certs[0]!).serialNumber,
  };
}


describe(`workloads on a real agent socket (${storeKind()} store)`, () => {
  let ca: TestCa;
  let agent: AgentHandle | undefined;
  let dir: string;
  const uid = process.getuid!();

  beforeAll(async () => {
    ca = await startTestCa();
    dir = mkdtempSync(join(tmpdir(), 'cairn-wl-'));
    chmodSync(dir, 0o755);
    await ca.admin('/v1/trust-domains', { body: { name: TD, x509SvidTtlSeconds: 600 } });
    const { token, spiffeId } = await (await ca.admin('/v1/tokens', { body: { trustDomain: TD } })).json();
    const entry = (id: string, selectors: string[], extra: object = {}) =>
      ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/${id}`, parentId: spiffeId, selectors, ...extra } });
    // Two identities for this uid (server and client of the mTLS test); the server one is short-lived.
    await entry('a-server', [`unix:uid:${uid}`], { x509SvidTtl: 60, hint: 'server' });
    await entry('b-client', [`unix:uid:${uid}`], { hint: 'client' });
    await entry('other', ['unix:uid:3132']);
    agent = await startAgent({ dataDir: join(dir, 'agent'), joinToken: token, socketPath: join(dir, 'sock', 'api.sock') }, { logger: capturingLogger().logger });
    await agent.whenReady();
  });
  afterAll(async () => {
    await agent?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.runIf(isRoot)('processes under different uids get different identities from the same socket', async () => {
    expect(await fetchAsUid(agent!.socketPath, 3132)).toBe(`DATA spiffe://${TD}/other`);
    const own = await firstMessage<{ svids: X509SvidWire[] }>(grpcWorkloadClient(agent!.socketPath), 'FetchX509SVID');
    expect(own.svids.map((s) => s.spiffe_id).sort()).toEqual([`spiffe://${TD}/a-server`, `spiffe://${TD}/b-client`]);
  });

  it.runIf(isRoot)('a caller under a uid with no entry gets PermissionDenied and is recorded for discovery', async () => {
    expect(await fetchAsUid(agent!.socketPath, 3131)).toBe(`ERR ${grpc.status.PERMISSION_DENIED}`);
    expect(agent!.agent.discovery.list().some((c) => c.selectors.includes('unix:uid:3131'))).toBe(true);
  });

  it('two SVIDs complete an openssl s_server / s_client mTLS handshake, each verifying the other', async () => {
    const client = grpcWorkloadClient(agent!.socketPath);
    const msg = await firstMessage<{ svids: X509SvidWire[] }>(client, 'FetchX509SVID');
    client.close();
    const [server, peer] = msg.svids.map(pemOf) as [ReturnType<typeof pemOf>, ReturnType<typeof pemOf>];
    const files = mkdtempSync(join(tmpdir(), 'cairn-mtls-'));
    const write = (name: string, text: string): string => {
      writeFileSync(join(files, name), text, { mode: 0o600 });
      return join(files, name);
    };
    const [sCert, sKey, cCert, cKey, bundle] = [write('s.pem', server.chain), write('s.key', server.key), write('c.pem', peer.chain), write('c.key', peer.key), write('bundle.pem', server.bundle)];
    const port = await freePort();
    const s = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', sCert, '-key', sKey, '-CAfile', bundle, '-Verify', '1', '-verify_return_error', '-naccept', '1'], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      await waitForOutput(s, /ACCEPT/);
      const serverLog = waitForOutput(s, /hello from the client/);
      const c = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', cCert, '-key', cKey, '-CAfile', bundle, '-verify_return_error', '-ign_eof'], { stdio: ['pipe', 'pipe', 'pipe'] });
      const clientLog = waitForOutput(c, /Verify return code: 0 \(ok\)/);
      c.stdin!.write('hello from the client\n');
      const [cl, sl] = await Promise.all([clientLog, serverLog]);
      c.kill();
      expect(cl).toContain('Verify return code: 0 (ok)');
      // the server required and verified the client's SVID before the data arrived
      expect(sl).toMatch(/verify return:1/);
      expect(sl).toContain('hello from the client');
    } finally {
      s.kill();
      rmSync(files, { recursive: true, force: true });
    }
  });

  it('a JWT-SVID from the socket verifies with jose against FetchJWTBundles and against the CA JWKS URL', async () => {
    const client = grpcWorkloadClient(agent!.socketPath);
    const res = await unary<{ svids: { spiffe_id: string; svid: string }[] }>(client, 'FetchJWTSVID', { audience: ['payments'], spiffe_id: `spiffe://${TD}/b-client` });
    const token = res.svids[0]!.svid;
    const bundles = await firstMessage<{ bundles: Record<string, Buffer> }>(client, 'FetchJWTBundles');
    client.close();
    expect(Object.keys(bundles.bundles)).toEqual([`spiffe://${TD}`]);
    const local = await jwtVerify(token, createLocalJWKSet(JSON.parse(bundles.bundles[`spiffe://${TD}`]!.toString())), { audience: 'payments' });
    expect(local.payload.sub).toBe(`spiffe://${TD}/b-client`);
    const remote = await jwtVerify(token, createRemoteJWKSet(new URL(`${ca.url}/td/${TD}/jwks`)), { audience: 'payments' });
    expect(remote.payload.sub).toBe(`spiffe://${TD}/b-client`);
    // and the agent's own ValidateJWTSVID agrees, refusing another audience
    const ours = new WorkloadApiClient(`unix://${agent!.socketPath}`);
    try {
      expect((await ours.validateJwtSvid(token, 'payments')).spiffeId).toBe(`spiffe://${TD}/b-client`);
      await expect(ours.validateJwtSvid(token, 'billing')).rejects.toMatchObject({ code: 'invalid_argument' });
      // cached: the same token comes back for the same (identity, audience)
      const again = await ours.fetchJwtSvids(['payments'], `spiffe://${TD}/b-client`);
      expect(again[0]!.token).toBe(token);
    } finally {
      ours.close();
    }
  });

  it('a stream held open receives the rotated SVID (60 s TTL, renewed near half-life) without reconnecting', { timeout: 60_000 }, async () => {
    const client = grpcWorkloadClient(agent!.socketPath);
    const call = client.FetchX509SVID!({}, securityHeader()) as grpc.ClientReadableStream<{ svids: X509SvidWire[] }>;
    const serials: string[] = [];
    try {
      const rotated = await new Promise<X509SvidWire>((resolve, reject) => {
        call.on('data', (m: { svids: X509SvidWire[] }) => {
          const svid = m.svids.find((x) => x.spiffe_id === `spiffe://${TD}/a-server`)!;
          serials.push(pemOf(svid).serial);
          if (new Set(serials).size > 1) resolve(svid);
        });
        call.on('error', reject);
        call.on('end', () => reject(new Error('the stream ended')));
      });
      const pem = pemOf(rotated);
      expect(opensslVerify(pem.chain, pem.bundle)).toContain('OK');
      expect(new Set(serials).size).toBe(2);
    } finally {
      call.cancel();
      client.close();
    }
  });

  it('an updated entry reaches open streams as a re-issued SVID, without ending them', async () => {
    const client = grpcWorkloadClient(agent!.socketPath);
    const call = client.FetchX509SVID!({}, securityHeader()) as grpc.ClientReadableStream<{ svids: X509SvidWire[] }>;
    const errors: grpc.ServiceError[] = [];
    call.on('error', (e: grpc.ServiceError) => errors.push(e));
    try {
      const hints: string[][] = [];
      let first: () => void;
      const opened = new Promise<void>((resolve) => (first = resolve));
      const updated = new Promise<void>((resolve) =>
        call.on('data', (m: { svids: X509SvidWire[] }) => {
          hints.push(m.svids.map((x) => x.hint));
          first();
          if (m.svids.some((x) => x.hint === 'client-v2')) resolve();
        }),
      );
      await opened;
      const list = await (await ca.admin(`/v1/entries?spiffeId=${encodeURIComponent(`spiffe://${TD}/b-client`)}`)).json();
      const patched = await ca.admin(`/v1/entries/${list.entries[0].id}`, { method: 'PATCH', body: { hint: 'client-v2' } });
      expect(patched.status).toBe(200);
      await updated;
      // every message carried both identities: the old SVID served until its replacement arrived
      expect([...hints[0]!].sort()).toEqual(['client', 'server']);
      expect(hints.every((h) => h.length === 2)).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      call.cancel();
      client.close();
    }
  });

  it('with the CA stopped the agent keeps serving; when it returns, changes flow again without restarts', { timeout: 60_000 }, async () => {
    const ours = new WorkloadApiClient(`unix://${agent!.socketPath}`);
    try {
      await ca.stop();
      await new Promise((r) => setTimeout(r, 1500)); // let the agent notice and back off
      const during = await ours.fetchX509Context();
      expect(during.svids.map((s) => s.spiffeId)).toContain(`spiffe://${TD}/b-client`);
      const { certificates, bundle } = x509Pem(during.svids[0]!);
      expect(opensslVerify(certificates, bundle)).toContain('OK');
      await ca.restart();
      const parentId = agent!.spiffeId;
      const created = await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/late`, parentId, selectors: [`unix:uid:${uid}`] } });
      expect(created.status).toBe(201);
      const seen = async (): Promise<boolean> => (await ours.fetchX509Context()).svids.some((s) => s.spiffeId === `spiffe://${TD}/late`);
      const deadline = Date.now() + 45_000;
      while (!(await seen())) {
        if (Date.now() > deadline) throw new Error('the agent did not pick up the new entry after the CA returned');
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      ours.close();
    }
  });

  it('on shutdown, open streams end with Unavailable and the socket file is removed', async () => {
    const client = grpcWorkloadClient(agent!.socketPath);
    const call = client.FetchX509SVID!({}, securityHeader()) as grpc.ClientReadableStream<unknown>;
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    await new Promise((resolve) => call.once('data', resolve));
    const socket = agent!.socketPath;
    await agent!.close();
    agent = undefined;
    const err = await ended;
    client.close();
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(err.details).toMatch(/shutting down/);
    expect(existsSync(socket)).toBe(false);
    // and our client reports it as retryable
    const ours = new WorkloadApiClient(`unix://${socket}`);
    const failure = await ours.fetchX509Context().catch((e: unknown) => e);
    ours.close();
    expect(failure).toBeInstanceOf(WorkloadApiError);
    expect(failure).toMatchObject({ code: 'unavailable', retryable: true });
  });
});

describe(`an agent cut off from its CA (${storeKind()} store)`, () => {
  it('serves its SVIDs until they expire, then answers PermissionDenied instead of an expired SVID', async () => {
    const ca = await startTestCa();
    const dir = mkdtempSync(join(tmpdir(), 'cairn-exp-'));
    const clock = new FakeClock(new Date());
    let agent: AgentHandle | undefined;
    const client = () => new WorkloadApiClient(`unix://${join(dir, 'api.sock')}`);
    try {
      await ca.admin('/v1/trust-domains', { body: { name: 'expiry.test', x509SvidTtlSeconds: 60 } });
      const { token, spiffeId } = await (await ca.admin('/v1/tokens', { body: { trustDomain: 'expiry.test' } })).json();
      await ca.admin('/v1/entries', { body: { spiffeId: 'spiffe://expiry.test/w', parentId: spiffeId, selectors: [`unix:uid:${process.getuid!()}`] } });
      agent = await startAgent({ dataDir: join(dir, 'agent'), joinToken: token, socketPath: join(dir, 'api.sock') }, { clock, logger: capturingLogger().logger });
      await agent.whenReady();
      await ca.stop();
      clock.advance(45); // past renewal time: renewals fail, the SVID is still valid and still served
      await new Promise((r) => setTimeout(r, 1500));
      const c1 = client();
      expect((await c1.fetchX509Context()).svids.map((s) => s.spiffeId)).toEqual(['spiffe://expiry.test/w']);
      c1.close();
      clock.advance(30); // past notAfter
      await new Promise((r) => setTimeout(r, 1500));
      const c2 = client();
      await expect(c2.fetchX509Context()).rejects.toMatchObject({ code: 'permission_denied' });
      c2.close();
    } finally {
      await agent?.close();
      await ca.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

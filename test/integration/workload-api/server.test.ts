import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLeafTbs, signCertificate } from '../../../ca/issuance/leaf-template.js';
import { subjectPublicKeyFromDer } from '../../../ca/issuance/spki.js';
import { mintJwtSvid } from '../../../ca/issuance/service.js';
import { publicJwkOf } from '../../../spiffe/bundle/jwk.js';
import { SpiffeId } from '../../../spiffe/id.js';
import type { Bundle } from '../../../spiffe/bundle/bundle.js';
import { splitDerCertificates, parseX509Svid } from '../../../spiffe/svid/x509.js';
import { startWorkloadApiServer, type WorkloadApiServer } from '../../../workload-api/server.js';
import type { PeerInfo, Workload, WorkloadApiPorts, X509Identity } from '../../../workload-api/ports.js';
import { packageRoot } from '../../../lib/paths.js';
import { testCaCertificate } from '../../support/certs.js';

/** A fake agent: real certificates, in-memory state the test changes. */
async function fakeAgent() {
  const ca = await testCaCertificate('wl.test');
  const jwtKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issue = (path: string): X509Identity => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const cert = signCertificate(ca.template, buildLeafTbs(ca.template, {
      serial: Buffer.from(Math.random().toString(16).slice(2, 18).padStart(16, '1'), 'hex'),
      notBefore: new Date(Date.now() - 10_000), notAfter: new Date(Date.now() + 3600_000),
      spiffeId: `spiffe://wl.test${path}`, dnsNames: [], publicKey: subjectPublicKeyFromDer(pair.publicKey.export({ format: 'der', type: 'spki' })),
    }));
    return { spiffeId: `spiffe://wl.test${path}`, chain: [cert], privateKey: pair.privateKey.export({ format: 'der', type: 'pkcs8' }) };
  };
  const bundle: Bundle = { trustDomain: 'wl.test', x509Authorities: [ca.der], jwtAuthorities: [{ kid: 'k1', jwk: publicJwkOf(jwtKey.publicKey) }] };
  const byUid = new Map<number, X509Identity[]>();
  const listeners = new Set<() => void>();
  const state = { ready: true };
  const authority = {
    trustDomain: { name: 'wl.test', caKeyType: 'ec-p256' as const, jwtKeyType: 'ec-p256' as const, authorityPrepublishSeconds: 1800, caTtlSeconds: 86400, x509SvidTtlSeconds: 3600, jwtSvidTtlSeconds: 300, jwtIssuer: null, bundleSequence: 1, bundleRefreshHintSeconds: 300, bundleEndpoint: null, createdAt: new Date(), updatedAt: new Date() },
    x509: { id: 'x', certificate: ca.der, notAfter: new Date(Date.now() + 86400_000), template: ca.template },
    jwt: {
      kid: 'k1', alg: 'ES256' as const, notAfter: new Date(Date.now() + 86400_000),
      encodedHeader: Buffer.from(JSON.stringify({ alg: 'ES256', kid: 'k1', typ: 'JWT' })).toString('base64url'),
      sign: (input: Buffer) => sign('sha256', input, { key: jwtKey.privateKey, dsaEncoding: 'ieee-p1363' }),
    },
  };
  const ports: WorkloadApiPorts = {
    ready: () => state.ready,
    trustDomain: () => 'wl.test',
    bundle: (td) => (td === 'wl.test' ? bundle : undefined),
    now: () => new Date(),
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    attestConnection(peer: PeerInfo) {
      const workload: Workload = {
        snapshot: () => ({ x509Svids: byUid.get(peer.uid) ?? [], federatedTrustDomains: [] }),
        jwtSvids: async (audience, spiffeId) =>
          (byUid.get(peer.uid) ?? []).filter((s) => !spiffeId || s.spiffeId === spiffeId).map((s) => ({ spiffeId: s.spiffeId, token: mintJwtSvid(authority, { spiffeId: SpiffeId.parse(s.spiffeId), audience }, new Date()).token })),
      };
      return { workload: async () => workload, release: () => undefined };
    },
  };
  return { ports, issue, byUid, state, changed: () => listeners.forEach((l) => l()), ca };
}

const proto = grpc.loadPackageDefinition(protoLoader.loadSync(join(packageRoot(), 'workload-api/proto/workload.proto'), { keepCase: true, longs: String, defaults: true })) as unknown as {
  SpiffeWorkloadAPI: new (address: string, creds: grpc.ChannelCredentials) => grpc.Client & Record<string, (...args: unknown[]) => unknown>;
};

describe('Workload API server on a real Unix socket, called by @grpc/grpc-js', () => {
  let dir: string;
  let server: WorkloadApiServer;
  let agent: Awaited<ReturnType<typeof fakeAgent>>;
  let client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  const header = (): grpc.Metadata => {
    const m = new grpc.Metadata();
    m.set('workload.spiffe.io', 'true');
    return m;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-wl-'));
    agent = await fakeAgent();
    server = await startWorkloadApiServer({ socketPath: join(dir, 'nested', 'api.sock'), ports: agent.ports, peerOf: () => ({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() }) });
    client = new proto.SpiffeWorkloadAPI(`unix://${server.socketPath}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const unary = (method: string, req: object, md = header()): Promise<{ err: grpc.ServiceError | null; res: Record<string, unknown> }> =>
    new Promise((resolve) => client[method]!(req, md, (err: grpc.ServiceError | null, res: Record<string, unknown>) => resolve({ err, res })));

  const firstOf = (method: string, md = header()): Promise<{ err?: grpc.ServiceError; msg?: Record<string, unknown>; call: grpc.ClientReadableStream<unknown> }> =>
    new Promise((resolve) => {
      const call = client[method]!({}, md) as grpc.ClientReadableStream<unknown>;
      call.once('data', (msg: Record<string, unknown>) => resolve({ msg, call }));
      call.once('error', (err: grpc.ServiceError) => resolve({ err, call }));
    });

  it('binds a world-connectable socket in a created directory', () => {
    expect(statSync(server.socketPath).isSocket()).toBe(true);
    expect(statSync(server.socketPath).mode & 0o777).toBe(0o777);
  });

  it('refuses calls without the security header with InvalidArgument', async () => {
    const { err } = await firstOf('FetchX509SVID', new grpc.Metadata());
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const jwt = await unary('FetchJWTSVID', { audience: ['a'] }, new grpc.Metadata());
    expect(jwt.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('answers PermissionDenied to a caller with no identity, Unavailable before the first sync', async () => {
    const { err } = await firstOf('FetchX509SVID');
    expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
    agent.state.ready = false;
    const early = await firstOf('FetchX509SVID');
    expect(early.err?.code).toBe(grpc.status.UNAVAILABLE);
    agent.state.ready = true;
  });

  it('streams the complete X.509 state at once and again on every change, DER encoded', async () => {
    agent.byUid.set(process.getuid!(), [agent.issue('/web')]);
    const { msg, call } = await firstOf('FetchX509SVID');
    const svids = msg!.svids as { spiffe_id: string; x509_svid: Buffer; x509_svid_key: Buffer; bundle: Buffer }[];
    expect(svids.map((s) => s.spiffe_id)).toEqual(['spiffe://wl.test/web']);
    expect(parseX509Svid(splitDerCertificates(svids[0]!.x509_svid)).spiffeId.toString()).toBe('spiffe://wl.test/web');
    expect(splitDerCertificates(svids[0]!.bundle)[0]!.equals(agent.ca.der)).toBe(true);
    const next = new Promise<Record<string, unknown>>((resolve) => call.once('data', resolve));
    agent.byUid.set(process.getuid!(), [agent.issue('/web'), agent.issue('/api')]);
    agent.changed();
    const second = await next;
    expect((second.svids as { spiffe_id: string }[]).map((s) => s.spiffe_id)).toEqual(['spiffe://wl.test/web', 'spiffe://wl.test/api']);
    // the caller's last SVID disappears: the stream ends with PermissionDenied
    const ended = new Promise<grpc.ServiceError>((resolve) => call.once('error', resolve));
    agent.byUid.set(process.getuid!(), []);
    agent.changed();
    expect((await ended).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('serves bundles keyed by trust domain ID; JWT bundles carry only JWT keys', async () => {
    agent.byUid.set(process.getuid!(), [agent.issue('/web')]);
    const x = await firstOf('FetchX509Bundles');
    expect(Object.keys(x.msg!.bundles as object)).toEqual(['spiffe://wl.test']);
    x.call.cancel();
    const j = await firstOf('FetchJWTBundles');
    const jwks = JSON.parse(((j.msg!.bundles as Record<string, Buffer>)['spiffe://wl.test']!).toString());
    expect(jwks.keys.map((k: { kid: string; use?: string }) => [k.kid, k.use])).toEqual([['k1', undefined]]);
    j.call.cancel();
  });

  it('mints and validates JWT-SVIDs', async () => {
    agent.byUid.set(process.getuid!(), [agent.issue('/web')]);
    const noAud = await unary('FetchJWTSVID', { audience: [] });
    expect(noAud.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const { err, res } = await unary('FetchJWTSVID', { audience: ['gw'] });
    expect(err).toBeNull();
    const token = (res.svids as { spiffe_id: string; svid: string }[])[0]!.svid;
    const ok = await unary('ValidateJWTSVID', { audience: 'gw', svid: token });
    expect(ok.err).toBeNull();
    expect(ok.res.spiffe_id).toBe('spiffe://wl.test/web');
    const bad = await unary('ValidateJWTSVID', { audience: 'other', svid: token });
    expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('answers Unimplemented for the WIT RPCs', async () => {
    const { err } = await firstOf('FetchWITSVID');
    expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
  });
});

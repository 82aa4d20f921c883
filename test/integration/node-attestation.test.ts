import { execFileSync } from 'node:child_process';
import { createHash, randomUUID, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { X509SvidMessage } from '../../contract/agent-api.js';
import { NodeAttestationPaths as P, type X509PopChallenge } from '../../contract/node-attestation.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson } from '../../lib/tls-client.js';
import { pemToDerList } from '../../spiffe/bundle/bundle.js';
import { startAgent } from '../../node-agent/main.js';
import { WorkloadApiClient } from '../../workload-api/client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { capturingLogger } from '../support/logs.js';

const TD = 'nodes.test';
const csr = (): string => generateKeyAndCsr('ec-p256').csr.toString('base64');
const openssl = (args: string[], cwd: string): void => {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
};

describe(`node attestation with Kubernetes PSATs and x509pop (${storeKind()} store)`, () => {
  let ca: TestCa;
  let authority: string;
  let pin: string;
  let dir: string;
  // offline (JWKS) cluster
  let signingKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  let jwk: JWK;
  // TokenReview cluster
  let apiServer: Server;
  const reviews = new Map<string, object>();
  // Pods and nodes the stand-in API server knows (GET /api/v1/...), for the label selectors.
  const kubeObjects = new Map<string, object>([
    ['/api/v1/namespaces/cairn/pods/cairn-agent-abcde', { kind: 'Pod', metadata: { name: 'cairn-agent-abcde', namespace: 'cairn', uid: 'pod-live-0001', labels: { app: 'cairn-agent', 'app.kubernetes.io/part-of': 'cairn' } } }],
    ['/api/v1/nodes/worker-7', { kind: 'Node', metadata: { name: 'worker-7', uid: 'node-uid-0007', labels: { 'topology.kubernetes.io/zone': 'eu-west-1a', pool: 'edge' } } }],
  ]);
  let reviewRequests = 0;
  let jwksRequests = 0;

  const post = <T>(path: string, body: unknown) => requestJson<T & { code?: string; message?: string }>('POST', ca.tlsUrl + path, body, { ca: authority });
  const admin = async (path: string, body?: unknown, method = 'PUT') => {
    const res = await ca.admin(path, { method, ...(body === undefined ? {} : { body }) });
    return { status: res.status, body: res.status === 204 ? undefined : await res.json() };
  };

  const psat = (claims: { ns?: string; sa?: string; podUid?: string; nodeUid?: string | null; aud?: string; expiresIn?: string; iss?: string; jti?: string } = {}) => {
    const k8s: Record<string, unknown> = {
      namespace: claims.ns ?? 'cairn',
      serviceaccount: { name: claims.sa ?? 'cairn-agent', uid: randomUUID() },
      pod: { name: 'cairn-agent-7x2kq', uid: claims.podUid ?? 'a1b2c3d4-0000-4000-8000-000000000001' },
      ...(claims.nodeUid === null ? {} : { node: { name: 'worker-1', uid: claims.nodeUid ?? '5f0e7c2a-1111-4111-8111-000000000001' } }),
    };
    return new SignJWT({ 'kubernetes.io': k8s })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid! })
      .setIssuer(claims.iss ?? 'https://oidc.prod.example')
      .setSubject(`system:serviceaccount:${claims.ns ?? 'cairn'}:${claims.sa ?? 'cairn-agent'}`)
      .setAudience([claims.aud ?? 'cairn-ca'])
      .setIssuedAt()
      .setNotBefore('-1m')
      .setExpirationTime(claims.expiresIn ?? '10m')
      .setJti(claims.jti ?? randomUUID())
      .sign(signingKey);
  };

  beforeAll(async () => {
    ca = await startTestCa();
    dir = mkdtempSync(join(tmpdir(), 'cairn-nodes-'));
    await ca.admin('/v1/trust-domains', { body: { name: TD } });
    ({ pin } = await (await ca.admin(P.caTls)).json());
    authority = await fetchPinnedAuthority(ca.tlsUrl, pin);

    const pair = await generateKeyPair('RS256');
    signingKey = pair.privateKey;
    jwk = { ...(await exportJWK(pair.publicKey)), kid: 'sa-key-1', alg: 'RS256', use: 'sig' };

    // A stand-in API server that speaks the real TokenReview JSON, over TLS with its own CA.
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'api.key', '-out', 'api.pem', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], dir);
    apiServer = createServer({ key: readFileSync(join(dir, 'api.key')), cert: readFileSync(join(dir, 'api.pem')) }, (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (req.method === 'GET' && req.url === '/openid/v1/jwks') {
          jwksRequests++;
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
          return;
        }
        if (req.method === 'GET' && req.url?.startsWith('/api/v1/')) {
          const found = req.headers.authorization === 'Bearer ca-service-account-token' ? kubeObjects.get(req.url) : undefined;
          res.writeHead(found ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(found ?? { kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404 }));
          return;
        }
        reviewRequests++;
        if (req.url !== '/apis/authentication.k8s.io/v1/tokenreviews' || req.headers.authorization !== 'Bearer ca-service-account-token') {
          res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', status: 'Failure', code: 401 }));
          return;
        }
        const review = JSON.parse(body) as { spec: { token: string; audiences: string[] } };
        const status = reviews.get(review.spec.token) ?? { authenticated: false, error: 'invalid bearer token' };
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: review.spec, status }));
      });
    });
    await new Promise<void>((r) => apiServer.listen(0, '127.0.0.1', r));

    expect((await admin(`/v1/trust-domains/${TD}/attestors/k8s-psat/prod`, { mode: 'jwks', issuer: 'https://oidc.prod.example', jwks: { keys: [jwk] }, allowedServiceAccounts: ['cairn:cairn-agent'] })).status).toBe(200);
    expect((await admin(`/v1/trust-domains/${TD}/attestors/k8s-psat/onprem`, {
      mode: 'token_review',
      apiServer: `https://127.0.0.1:${(apiServer.address() as AddressInfo).port}`,
      apiCaCertificates: readFileSync(join(dir, 'api.pem'), 'utf8'),
      apiToken: 'ca-service-account-token',
      allowedServiceAccounts: ['cairn:cairn-agent'],
    })).status).toBe(200);
  });
  afterAll(async () => {
    apiServer?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('k8s_psat, offline against the cluster JWKS', () => {
    it('accepts a valid token once, issues the node-derived agent ID with k8s_psat selectors, and refuses the replay', async () => {
      const token = await psat();
      const first = await post<X509SvidMessage>(P.attestPsat, { trustDomain: TD, cluster: 'prod', token, csr: csr() });
      expect(first.status).toBe(201);
      expect(first.body.spiffeId).toBe(`spiffe://${TD}/cairn/agent/k8s_psat/prod/5f0e7c2a-1111-4111-8111-000000000001`);
      const agents = await (await ca.admin(`/v1/agents?trustDomain=${TD}`)).json();
      const node = agents.agents.find((a: { spiffeId: string }) => a.spiffeId === first.body.spiffeId);
      expect(node).toMatchObject({ attestationType: 'k8s_psat', kind: 'agent' });
      expect(node.selectors).toEqual(expect.arrayContaining(['k8s_psat:cluster:prod', 'k8s_psat:agent_ns:cairn', 'k8s_psat:agent_sa:cairn-agent', 'k8s_psat:agent_node_name:worker-1', 'k8s_psat:agent_node_uid:5f0e7c2a-1111-4111-8111-000000000001']));
      const replay = await post(P.attestPsat, { trustDomain: TD, cluster: 'prod', token, csr: csr() });
      expect(replay.status).toBe(401);
      expect(replay.body).toMatchObject({ code: 'unauthenticated', message: expect.stringMatching(/already used/) });
      // re-attestation with a fresh token is fine (unlike join tokens)
      const again = await post<X509SvidMessage>(P.attestPsat, { trustDomain: TD, cluster: 'prod', token: await psat(), csr: csr() });
      expect(again.status).toBe(201);
      expect(again.body.spiffeId).toBe(first.body.spiffeId);
    });

    it.each([
      ['a wrong audience', { aud: 'kubernetes' }, 401, 'unauthenticated'],
      ['an expired token', { expiresIn: '-1m' }, 401, 'unauthenticated'],
      ['another issuer', { iss: 'https://oidc.evil.example' }, 401, 'unauthenticated'],
      ['a service account not on the allow-list', { sa: 'default' }, 403, 'permission_denied'],
      ['a token without node binding', { nodeUid: null }, 401, 'unauthenticated'],
    ] as const)('refuses %s', async (_what, claims, status, code) => {
      const res = await post(P.attestPsat, { trustDomain: TD, cluster: 'prod', token: await psat(claims), csr: csr() });
      expect(res.status).toBe(status);
      expect(res.body.code).toBe(code);
    });

    it('refuses a token signed by another key, an unknown cluster and a non-JWT', async () => {
      const other = await generateKeyPair('RS256');
      const forged = await new SignJWT({ 'kubernetes.io': { namespace: 'cairn', serviceaccount: { name: 'cairn-agent' }, pod: { uid: 'x' }, node: { uid: 'y' } } })
        .setProtectedHeader({ alg: 'RS256', kid: 'sa-key-1' }).setIssuer('https://oidc.prod.example').setAudience('cairn-ca').setExpirationTime('10m').sign(other.privateKey);
      for (const [cluster, token] of [['prod', forged], ['staging', await psat()], ['prod', 'not-a-jwt']] as const) {
        const res = await post(P.attestPsat, { trustDomain: TD, cluster, token, csr: csr() });
        expect(res.status, `${cluster} ${token.slice(0, 12)}`).toBe(401);
        expect(res.body.code).toBe('unauthenticated');
      }
    });
  });

  it('k8s_psat offline with the JWKS fetched from the cluster issuer (cached)', async () => {
    const configured = await admin(`/v1/trust-domains/${TD}/attestors/k8s-psat/remote`, {
      mode: 'jwks',
      issuer: 'https://oidc.prod.example',
      jwksUrl: `https://127.0.0.1:${(apiServer.address() as AddressInfo).port}/openid/v1/jwks`,
      jwksCaCertificates: readFileSync(join(dir, 'api.pem'), 'utf8'),
      allowedServiceAccounts: ['cairn:cairn-agent'],
    });
    expect(configured.status).toBe(200);
    for (const nodeUid of ['remote-node-1', 'remote-node-2']) {
      const res = await post<X509SvidMessage>(P.attestPsat, { trustDomain: TD, cluster: 'remote', token: await psat({ nodeUid }), csr: csr() });
      expect(res.status).toBe(201);
      expect(res.body.spiffeId).toBe(`spiffe://${TD}/cairn/agent/k8s_psat/remote/${nodeUid}`);
    }
    expect(jwksRequests).toBe(1);
    const both = await admin(`/v1/trust-domains/${TD}/attestors/k8s-psat/both`, { mode: 'jwks', issuer: 'https://x.example', jwksUrl: 'https://x.example/jwks', jwks: { keys: [jwk] }, allowedServiceAccounts: ['a:b'] });
    expect(both.status).toBe(400);
  });

  describe('k8s_psat through the TokenReview API', () => {
    it('accepts a token the cluster authenticates and refuses one whose pod was deleted or whose binding disagrees', async () => {
      const live = await psat({ podUid: 'pod-live-0001', nodeUid: 'node-uid-0001' });
      reviews.set(live, {
        authenticated: true,
        audiences: ['cairn-ca'],
        user: { username: 'system:serviceaccount:cairn:cairn-agent', uid: 'sa-uid', extra: { 'authentication.kubernetes.io/pod-name': ['cairn-agent-abcde'], 'authentication.kubernetes.io/pod-uid': ['pod-live-0001'], 'authentication.kubernetes.io/node-name': ['worker-7'], 'authentication.kubernetes.io/node-uid': ['node-uid-0007'] } },
      });
      const before = reviewRequests;
      const ok = await post<X509SvidMessage>(P.attestPsat, { trustDomain: TD, cluster: 'onprem', token: live, csr: csr() });
      expect(ok.status).toBe(201);
      // the node comes from the API server's answer, not from the token's own claims
      expect(ok.body.spiffeId).toBe(`spiffe://${TD}/cairn/agent/k8s_psat/onprem/node-uid-0007`);
      expect(reviewRequests).toBe(before + 1);
      // the pod's and node's labels, read from the API server, become selectors node aliases can use
      const node = (await (await ca.admin(`/v1/agents?trustDomain=${TD}`)).json()).agents.find((a: { spiffeId: string }) => a.spiffeId === ok.body.spiffeId);
      expect(node.selectors).toEqual(expect.arrayContaining([
        'k8s_psat:agent_pod_label:app:cairn-agent',
        'k8s_psat:agent_pod_label:app.kubernetes.io/part-of:cairn',
        'k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-west-1a',
        'k8s_psat:agent_node_label:pool:edge',
      ]));

      // the cluster authenticates the token, but the pod it names is no longer there
      const orphan = await psat({ podUid: 'pod-orphan-0001' });
      reviews.set(orphan, { authenticated: true, audiences: ['cairn-ca'], user: { username: 'system:serviceaccount:cairn:cairn-agent', extra: { 'authentication.kubernetes.io/pod-name': ['cairn-agent-zzzzz'], 'authentication.kubernetes.io/pod-uid': ['pod-orphan-0001'], 'authentication.kubernetes.io/node-name': ['worker-7'], 'authentication.kubernetes.io/node-uid': ['node-uid-0007'] } } });
      const noPod = await post(P.attestPsat, { trustDomain: TD, cluster: 'onprem', token: orphan, csr: csr() });
      expect(noPod.status).toBe(401);
      expect(noPod.body.message).toMatch(/the pod the token is bound to no longer exists/);

      const deleted = await psat({ podUid: 'pod-gone-0001' });
      reviews.set(deleted, { authenticated: false, error: '[pods "cairn-agent-gone" not found]' });
      const gone = await post(P.attestPsat, { trustDomain: TD, cluster: 'onprem', token: deleted, csr: csr() });
      expect(gone.status).toBe(401);
      // the API server's own words stay with the CA: the caller hears a sentence of ours
      expect(gone.body.message).toMatch(/does not authenticate this token/);
      expect(gone.body.message).not.toMatch(/cairn-agent-gone/);

      const mismatch = await psat({ podUid: 'pod-claimed-0001' });
      reviews.set(mismatch, { authenticated: true, audiences: ['cairn-ca'], user: { username: 'system:serviceaccount:cairn:cairn-agent', extra: { 'authentication.kubernetes.io/pod-uid': ['pod-actual-0002'], 'authentication.kubernetes.io/node-uid': ['n'] } } });
      const bad = await post(P.attestPsat, { trustDomain: TD, cluster: 'onprem', token: mismatch, csr: csr() });
      expect(bad.status).toBe(401);
      expect(bad.body.message).toMatch(/not bound to the pod/);
    });
  });

  describe('x509pop', () => {
    let deviceDer: Buffer;
    let deviceKey: string;

    beforeAll(() => {
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mfr.key', '-out', 'mfr.pem', '-days', '30', '-subj', '/CN=Acme Manufacturing CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], dir);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'device.key', '-out', 'device.csr', '-subj', '/CN=sensor-0042'], dir);
      writeFileSync(join(dir, 'device.ext'), 'basicConstraints=CA:FALSE\nsubjectAltName=URI:urn:acme:sensor:0042\n');
      openssl(['x509', '-req', '-in', 'device.csr', '-CA', 'mfr.pem', '-CAkey', 'mfr.key', '-days', '30', '-out', 'device.pem', '-extfile', 'device.ext'], dir);
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '30', '-subj', '/CN=sensor-0042', '-addext', 'basicConstraints=CA:FALSE'], dir);
      deviceDer = pemToDerList(readFileSync(join(dir, 'device.pem'), 'utf8'))[0]!;
      deviceKey = readFileSync(join(dir, 'device.key'), 'utf8');
    });

    it('is configured with manufacturer CAs only (a leaf is refused)', async () => {
      expect((await admin(`/v1/trust-domains/${TD}/attestors/x509pop/acme`, { caCertificates: readFileSync(join(dir, 'mfr.pem'), 'utf8') })).status).toBe(200);
      const leaf = await admin(`/v1/trust-domains/${TD}/attestors/x509pop/bad`, { caCertificates: readFileSync(join(dir, 'device.pem'), 'utf8') });
      expect(leaf.status).toBe(400);
      expect(leaf.body.code).toBe('invalid_request');
    });

    it('attests a device holding a manufacturer-signed certificate, with x509pop selectors', async () => {
      const ch = await post<X509PopChallenge>(P.x509PopChallenge, { trustDomain: TD, chain: [deviceDer.toString('base64')] });
      expect(ch.status).toBe(201);
      const signature = sign('sha256', Buffer.from(ch.body.nonce, 'base64'), deviceKey).toString('base64');
      const res = await post<X509SvidMessage>(P.attestX509Pop, { challengeId: ch.body.challengeId, signature, csr: csr() });
      expect(res.status).toBe(201);
      const fingerprint = createHash('sha1').update(deviceDer).digest('hex');
      expect(res.body.spiffeId).toBe(`spiffe://${TD}/cairn/agent/x509pop/${fingerprint}`);
      const node = (await (await ca.admin(`/v1/agents?trustDomain=${TD}`)).json()).agents.find((a: { spiffeId: string }) => a.spiffeId === res.body.spiffeId);
      expect(node.selectors).toEqual(expect.arrayContaining(['x509pop:subject:cn:sensor-0042', 'x509pop:san:uri:urn:acme:sensor:0042', expect.stringMatching(/^x509pop:ca:fingerprint:[0-9a-f]{40}$/), expect.stringMatching(/^x509pop:serialnumber:[0-9a-f]+$/)]));
      // the same answer again is a replay
      const replay = await post(P.attestX509Pop, { challengeId: ch.body.challengeId, signature, csr: csr() });
      expect(replay.status).toBe(401);
      expect(replay.body.code).toBe('unauthenticated');
      // two copies of one right answer racing: exactly one is enrolled
      const ch2 = await post<X509PopChallenge>(P.x509PopChallenge, { trustDomain: TD, chain: [deviceDer.toString('base64')] });
      const signature2 = sign('sha256', Buffer.from(ch2.body.nonce, 'base64'), deviceKey).toString('base64');
      const raced = await Promise.all([0, 1, 2].map(() => post(P.attestX509Pop, { challengeId: ch2.body.challengeId, signature: signature2, csr: csr() })));
      expect(raced.map((r) => r.status).sort()).toEqual([201, 401, 401]);
    });

    it('refuses a self-signed certificate and a signature by another key', async () => {
      const rogue = pemToDerList(readFileSync(join(dir, 'rogue.pem'), 'utf8'))[0]!;
      const selfSigned = await post(P.x509PopChallenge, { trustDomain: TD, chain: [rogue.toString('base64')] });
      expect(selfSigned.status).toBe(401);
      expect(selfSigned.body.message).toMatch(/manufacturer CA/);
      const ch = await post<X509PopChallenge>(P.x509PopChallenge, { trustDomain: TD, chain: [deviceDer.toString('base64')] });
      const wrongKey = sign('sha256', Buffer.from(ch.body.nonce, 'base64'), readFileSync(join(dir, 'rogue.key'), 'utf8')).toString('base64');
      const res = await post(P.attestX509Pop, { challengeId: ch.body.challengeId, signature: wrongKey, csr: csr() });
      expect(res.status).toBe(401);
      expect(res.body.message).toMatch(/signature/);
    });
  });

  describe('rate limits', () => {
    it('limits failed PSAT and x509pop attempts per source address (60 a minute); other addresses are unaffected', async () => {
      const from = (address: string) => new HttpsAgent({ localAddress: address });
      const postFrom = <T>(agent: HttpsAgent, path: string, body: unknown) => requestJson<T & { code?: string; details?: { retryAfterSeconds?: number } }>('POST', ca.tlsUrl + path, body, { ca: authority, agent });
      const noisy = from('127.0.77.1');
      const quiet = from('127.0.77.2');
      try {
        const forged = { trustDomain: TD, cluster: 'prod', token: 'not-a-jwt', csr: csr() };
        const statuses: number[] = [];
        for (let i = 0; i < 60; i++) statuses.push((await postFrom(noisy, P.attestPsat, forged)).status);
        expect(statuses.every((st) => st === 401)).toBe(true);
        const limited = await postFrom(noisy, P.attestPsat, forged);
        expect(limited.status).toBe(429);
        expect(limited.body.code).toBe('rate_limited');
        expect(limited.body.details?.retryAfterSeconds).toBeGreaterThan(0);
        // the limit is per source and covers every evidence-based attestation route from it
        expect((await postFrom(noisy, P.x509PopChallenge, { trustDomain: TD, chain: ['AAAA'] })).status).toBe(429);
        expect((await postFrom(quiet, P.attestPsat, forged)).status).toBe(401);
        const token = await psat({ nodeUid: 'quiet-node-0001' });
        expect((await postFrom(quiet, P.attestPsat, { ...forged, token })).status).toBe(201);
      } finally {
        noisy.destroy();
        quiet.destroy();
      }
    });
  });

  describe('the agent process', () => {
    it('attests with a PSAT from its projected-token file and with x509pop from its device files; node aliases on PSAT selectors reach it', async () => {
      writeFileSync(join(dir, 'psat'), await psat({ nodeUid: 'agent-node-uid-1' }));
      // every agent of cluster "prod" serves what is parented to this alias
      await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/node/prod`, parentId: `spiffe://${TD}/cairn/server`, selectors: ['k8s_psat:cluster:prod'] } });
      await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/ns/shop/sa/cart`, parentId: `spiffe://${TD}/node/prod`, selectors: [`unix:uid:${process.getuid!()}`] } });
      const common = { caUrl: ca.tlsUrl, caPin: pin, trustDomain: TD };
      const psatLog = capturingLogger();
      const popLog = capturingLogger();
      const viaPsat = await startAgent(
        { dataDir: join(dir, 'agent-psat'), socketPath: join(dir, 'psat.sock'), attestation: { kind: 'k8s_psat', ...common, cluster: 'prod', tokenFile: join(dir, 'psat') } },
        { logger: psatLog.logger },
      );
      const viaPop = await startAgent(
        { dataDir: join(dir, 'agent-pop'), socketPath: join(dir, 'pop.sock'), attestation: { kind: 'x509pop', ...common, certFile: join(dir, 'device.pem'), keyFile: join(dir, 'device.key') } },
        { logger: popLog.logger },
      );
      try {
        expect(viaPsat.spiffeId).toBe(`spiffe://${TD}/cairn/agent/k8s_psat/prod/agent-node-uid-1`);
        expect(viaPop.spiffeId).toMatch(new RegExp(`^spiffe://${TD.replace('.', '\\.')}/cairn/agent/x509pop/[0-9a-f]{40}$`));
        await Promise.all([viaPsat.whenReady(), viaPop.whenReady()]);
        const viaAlias = new WorkloadApiClient(`unix://${viaPsat.socketPath}`);
        try {
          expect((await viaAlias.fetchX509Context()).svids.map((x) => x.spiffeId)).toEqual([`spiffe://${TD}/ns/shop/sa/cart`]);

          // Evicted, both attest again by themselves from their evidence (the kubelet has rotated the
          // PSAT meanwhile; the device still holds its key) and keep serving: a new entry reaches them.
          writeFileSync(join(dir, 'psat'), await psat({ nodeUid: 'agent-node-uid-1' }));
          for (const a of [viaPsat, viaPop]) expect((await ca.admin('/v1/agents/evict', { body: { spiffeId: a.spiffeId } })).status).toBeLessThan(300);
          await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/ns/shop/sa/checkout`, parentId: `spiffe://${TD}/node/prod`, selectors: [`unix:uid:${process.getuid!()}`] } });
          await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/device/svc`, parentId: viaPop.spiffeId, selectors: [`unix:uid:${process.getuid!()}`] } });
          const popClient = new WorkloadApiClient(`unix://${viaPop.socketPath}`);
          try {
            const deadline = Date.now() + 20_000;
            // Until its first entry arrives, the device agent answers PermissionDenied ("no identity
            // issued"), which the spec tells clients to retry: not yet, rather than a failure.
            const has = async (c: WorkloadApiClient, id: string): Promise<boolean> =>
              c.fetchX509Context().then(
                (ctx) => ctx.svids.some((x) => x.spiffeId === id),
                (err: unknown) => {
                  if ((err as { code?: string }).code === 'permission_denied') return false;
                  throw err;
                },
              );
            while (!((await has(viaAlias, `spiffe://${TD}/ns/shop/sa/checkout`)) && (await has(popClient, `spiffe://${TD}/device/svc`)))) {
              if (Date.now() > deadline) throw new Error('the evicted agents did not come back');
              await new Promise((r) => setTimeout(r, 200));
            }
          } finally {
            popClient.close();
          }
          for (const log of [psatLog, popLog]) expect(log.text()).toContain('agent.reattested');
          const agents = (await (await ca.admin(`/v1/agents?trustDomain=${TD}`)).json()).agents.map((a: { spiffeId: string }) => a.spiffeId);
          expect(agents).toEqual(expect.arrayContaining([viaPsat.spiffeId, viaPop.spiffeId]));
        } finally {
          viaAlias.close();
        }
      } finally {
        await viaPsat.close();
        await viaPop.close();
      }
    });
  });
});

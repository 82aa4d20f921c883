import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeAttestationPaths as P } from '../../contract/node-attestation.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson } from '../../lib/tls-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { FakeClock } from '../support/clock.js';
import { storeKind } from '../support/db.js';
import { runCairn, runCairnAsync } from '../support/processes.js';

const TD = 'creds.test';
const csr = (): string => generateKeyAndCsr('ec-p256').csr.toString('base64');

interface Seen {
  readonly url: string;
  readonly authorization: string;
  readonly body: string;
}

/**
 * A stand-in for whatever HTTPS server an admin points a cluster at: it records everything it is
 * sent and answers by the bearer token it receives (the CA's credential decides what it gets back).
 */
class Sink {
  readonly seen: Seen[] = [];
  server!: Server;
  private held: (() => void)[] = [];
  private holding = true;
  inFlight = 0;
  maxInFlight = 0;

  constructor(private readonly dir: string) {}

  get url(): string {
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  count(bearer: string): number {
    return this.seen.filter((s) => s.authorization === `Bearer ${bearer}`).length;
  }

  release(): void {
    this.holding = false;
    for (const h of this.held.splice(0)) h();
  }

  async start(): Promise<void> {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'sink.key', '-out', 'sink.pem', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: this.dir, stdio: 'pipe' });
    this.server = createServer({ key: readFileSync(join(this.dir, 'sink.key')), cert: readFileSync(join(this.dir, 'sink.pem')) }, (req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const authorization = req.headers.authorization ?? '';
      this.seen.push({ url: req.url ?? '', authorization, body });
      const json = (status: number, doc: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
      if (authorization === 'Bearer tok-hold' && this.holding) {
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        this.held.push(() => {
          this.inFlight--;
          json(201, { kind: 'TokenReview', status: { authenticated: false } });
        });
        return;
      }
      if (authorization === 'Bearer tok-hold') return json(201, { kind: 'TokenReview', status: { authenticated: false } });
      if (authorization === 'Bearer tok-500') return json(500, { kind: 'Status', message: 'UPSTREAM-DETAIL: etcd leader lost at 10.0.0.7' });
      if (authorization !== 'Bearer tok-ok' && authorization !== 'Bearer inline-secret-token-1b7e') return json(401, { kind: 'Status', message: 'UPSTREAM-DETAIL: Unauthorized' });
      if (req.url?.startsWith('/apis/authentication.k8s.io/')) {
        const review = JSON.parse(body) as { spec: { token: string } };
        const claims = JSON.parse(Buffer.from(review.spec.token.split('.')[1]!, 'base64url').toString()) as { 'kubernetes.io': { pod: { uid: string }; node: { uid: string } } };
        const k8s = claims['kubernetes.io'];
        return json(201, {
          kind: 'TokenReview',
          status: {
            authenticated: true,
            audiences: ['cairn-ca'],
            user: { username: 'system:serviceaccount:cairn:cairn-agent', extra: { 'authentication.kubernetes.io/pod-name': ['agent-pod'], 'authentication.kubernetes.io/pod-uid': [k8s.pod.uid], 'authentication.kubernetes.io/node-name': ['node-a'], 'authentication.kubernetes.io/node-uid': [k8s.node.uid] } },
          },
        });
      }
      if (req.url === '/api/v1/namespaces/cairn/pods/agent-pod') return json(200, { metadata: { uid: podUidFor(this.seen) } });
      if (req.url === '/api/v1/nodes/node-a') return json(200, { metadata: { uid: 'node-a-uid', labels: {} } });
      return json(404, { kind: 'Status', message: 'UPSTREAM-DETAIL: not found' });
    });
  }
}

/** The pod UID of the token in the last TokenReview the sink saw (the pod GET that follows must match it). */
function podUidFor(seen: readonly Seen[]): string {
  const last = seen.findLast((s) => s.url.startsWith('/apis/authentication.k8s.io/'));
  if (!last) return '';
  const token = (JSON.parse(last.body) as { spec: { token: string } }).spec.token;
  return (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { 'kubernetes.io': { pod: { uid: string } } })['kubernetes.io'].pod.uid;
}

describe(`k8s_psat credentials never come from host paths named through the admin API (${storeKind()} store)`, () => {
  let ca: TestCa;
  let dir: string;
  let authority: string;
  let sink: Sink;
  let kek: string;
  let signingKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  const clock = new FakeClock(new Date());
  const agents: HttpsAgent[] = [];

  /** Attempts come from their own loopback address per test, so the per-source failure budget never interferes. */
  const from = (address: string): HttpsAgent => {
    const a = new HttpsAgent({ localAddress: address });
    agents.push(a);
    return a;
  };
  const attempt = (cluster: string, agent: HttpsAgent, token: string) =>
    requestJson<{ code?: string; message?: string }>('POST', ca.tlsUrl + P.attestPsat, { trustDomain: TD, cluster, token, csr: csr() }, { ca: authority, agent });
  /** A well-formed projected token (its signature is the cluster's business: TokenReview decides). */
  const psat = (nodeUid = 'node-a-uid') =>
    new SignJWT({ 'kubernetes.io': { namespace: 'cairn', serviceaccount: { name: 'cairn-agent', uid: randomUUID() }, pod: { name: 'agent-pod', uid: randomUUID() }, node: { name: 'node-a', uid: nodeUid } } })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer('https://kubernetes.default.svc')
      .setSubject('system:serviceaccount:cairn:cairn-agent')
      .setAudience(['cairn-ca'])
      .setIssuedAt()
      .setExpirationTime('10m')
      .setJti(randomUUID())
      .sign(signingKey);
  const configure = async (cluster: string, body: object) => {
    const res = await ca.admin(`/v1/trust-domains/${TD}/attestors/k8s-psat/${cluster}`, { method: 'PUT', body: { allowedServiceAccounts: ['cairn:cairn-agent'], ...body } });
    return { status: res.status, body: (await res.json()) as { code?: string; message?: string; config?: Record<string, unknown> } };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-creds-'));
    sink = new Sink(dir);
    await sink.start();
    for (const t of ['tok-ok', 'tok-500', 'tok-hold']) writeFileSync(join(dir, t), `${t}\n`);
    mkdirSync(join(dir, 'a-directory'));
    const set = (name: string, tokenFile: string) => ({ name, apiServer: sink.url, tokenFile, caFile: join(dir, 'sink.pem') });
    ca = await startTestCa({
      clock,
      kubeCredentials: [set('good', join(dir, 'tok-ok')), set('failing', join(dir, 'tok-500')), set('failing-too', join(dir, 'tok-500')), set('held', join(dir, 'tok-hold')), set('missing', join(dir, 'no-such-token')), set('unreadable', join(dir, 'a-directory'))],
    });
    kek = readFileSync(join(ca.dataDir, 'kek'), 'utf8').trim();
    await ca.admin('/v1/trust-domains', { body: { name: TD } });
    const { pin } = await (await ca.admin(P.caTls)).json();
    authority = await fetchPinnedAuthority(ca.tlsUrl, pin);
    signingKey = (await generateKeyPair('ES256')).privateKey;
  });
  afterAll(async () => {
    for (const a of agents) a.destroy();
    sink?.server.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses host paths outright: the KEK named as the API token file never reaches the server the admin named', async () => {
    const kekFile = join(ca.dataDir, 'kek');
    const asked = [
      { mode: 'token_review', apiServer: sink.url, apiToken: 'x', apiCaFile: kekFile },
      { mode: 'jwks', issuer: 'https://issuer.example', jwksUrl: `${sink.url}/openid/v1/jwks`, jwksCaFile: kekFile },
      // the attack as reported: the admin's server (trusted through its CA file) and the KEK as the token file
      { mode: 'token_review', apiServer: sink.url, apiCaFile: join(dir, 'sink.pem'), apiTokenFile: kekFile },
    ];
    const configured = [];
    for (const body of asked) configured.push(await configure('leak', body));

    // anonymous callers trying the cluster the admin asked for
    const agent = from('127.0.91.1');
    const tried = [];
    for (let i = 0; i < 5; i++) tried.push(await attempt('leak', agent, await psat()));
    // (before: the CA read the KEK file and sent it as a bearer token to the admin's server)
    expect(sink.seen.filter((s) => s.authorization.includes(kek) || s.body.includes(kek))).toEqual([]);
    expect(sink.seen).toEqual([]);
    for (const [i, res] of configured.entries()) {
      expect(res.status, JSON.stringify(asked[i])).toBe(400);
      expect(res.body.code).toBe('invalid_request');
      expect(res.body.message).toMatch(/names a file on the CA host/);
    }
    const listed = await (await ca.admin(`/v1/trust-domains/${TD}/attestors`)).json();
    expect(listed.attestors.map((a: { name: string }) => a.name)).not.toContain('leak');
    for (const res of tried) {
      expect(res.status).toBe(401);
      expect(JSON.stringify(res.body)).not.toContain(kekFile);
    }
  });

  it('anonymous callers learn nothing about host files or upstream answers: one generic coded error, the detail in the log', async () => {
    for (const [cluster, credentials] of [['no-file', 'missing'], ['dir-file', 'unreadable'], ['answers-500', 'failing']] as const) {
      expect((await configure(cluster, { mode: 'token_review', kubeCredentials: credentials })).status).toBe(200);
    }
    const agent = from('127.0.91.2');
    const answers = [];
    for (const cluster of ['no-file', 'dir-file', 'answers-500']) {
      const res = await attempt(cluster, agent, await psat());
      expect(res.status, cluster).toBe(503);
      answers.push(res.body);
      const text = JSON.stringify(res.body);
      for (const leak of [dir, 'no-such-token', 'ENOENT', 'EISDIR', 'UPSTREAM-DETAIL', 'etcd', String((sink.server.address() as AddressInfo).port), 'HTTP 500']) expect(text, `${cluster}: ${leak}`).not.toContain(leak);
    }
    // a missing file, an unreadable one and a server error look exactly alike from outside
    expect(new Set(answers.map((a) => JSON.stringify({ code: a.code, message: a.message }))).size).toBe(1);
    expect(answers[0]).toMatchObject({ code: 'attestor_unavailable' });
    // the operator gets the detail
    const logs = ca.logs();
    expect(logs).toContain('no-such-token');
    expect(logs).toContain('ENOENT');
    expect(logs).toContain('EISDIR');
    expect(logs).toMatch(/answered POST \/apis\/authentication\.k8s\.io\/v1\/tokenreviews with HTTP 500/);
  });

  it('an inline API token is sealed under the KEK: never shown, not in the database in the clear, sent only to its API server', async () => {
    const res = await configure('inline', { mode: 'token_review', apiServer: sink.url, apiCaCertificates: readFileSync(join(dir, 'sink.pem'), 'utf8'), apiToken: 'inline-secret-token-1b7e' });
    expect(res.status).toBe(200);
    expect(res.body.config).toMatchObject({ mode: 'token_review', apiServer: sink.url, apiTokenSealed: true });
    const listed = JSON.stringify(await (await ca.admin(`/v1/trust-domains/${TD}/attestors`)).json());
    expect(listed).not.toContain('inline-secret-token-1b7e');
    const stored = await ca.handle.db.query<{ config: string }>(`SELECT config::text AS config FROM node_attestors WHERE name = 'inline'`);
    expect(stored.rows[0]!.config).not.toContain('inline-secret-token-1b7e');
    expect(stored.rows[0]!.config).toMatch(/"apiTokenSealed": "[A-Za-z0-9+/=]{40,}"/);

    const before = sink.count('inline-secret-token-1b7e');
    const ok = await attempt('inline', from('127.0.91.3'), await psat('inline-node-1'));
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    expect(sink.count('inline-secret-token-1b7e')).toBeGreaterThan(before);

    // inline means content: an apiServer needs its token, a CA file path is not certificates
    expect((await configure('inline-bad', { mode: 'token_review', apiServer: sink.url })).status).toBe(400);
    const notPem = await configure('inline-bad', { mode: 'token_review', apiServer: sink.url, apiToken: 't', apiCaCertificates: join(dir, 'sink.pem') });
    expect(notPem.status).toBe(400);
    expect(notPem.body.message).toMatch(/PEM certificates/);
    const unknownSet = await configure('inline-bad', { mode: 'token_review', kubeCredentials: 'prod' });
    expect(unknownSet.status).toBe(400);
    expect(unknownSet.body.message).toMatch(/no Kubernetes credential set "prod"/);
  });

  it('the CLI reads --api-token-file and --api-ca-file on the admin machine and sends their content', async () => {
    writeFileSync(join(dir, 'cli-token'), 'inline-secret-token-1b7e\n');
    const env = { CAIRN_SERVER: ca.url, CAIRN_ADMIN_TOKEN: ca.adminToken, CAIRN_DATA_DIR: dir };
    const added = await runCairnAsync(['attestor', 'k8s-psat', 'add', '--trust-domain', TD, '--cluster', 'from-cli', '--allow', 'cairn:cairn-agent', '--token-review',
      '--api-server', sink.url, '--api-token-file', join(dir, 'cli-token'), '--api-ca-file', join(dir, 'sink.pem'), '--json'], env);
    expect(added.status, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout).config).toMatchObject({ apiServer: sink.url, apiTokenSealed: true, apiCaCertificates: expect.stringContaining('BEGIN CERTIFICATE') });
    expect(added.stdout).not.toContain('inline-secret-token-1b7e');
    const ok = await attempt('from-cli', from('127.0.91.4'), await psat('cli-node-1'));
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    // and the CA's own credential sets are checked when it starts
    const bad = runCairn(['ca', 'start', '--kube-credentials', 'prod=token-file=/t'], { CAIRN_DATA_DIR: join(dir, 'never-started') });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--kube-credentials: credential set "prod" needs api-server=https/);
  }, 120_000);

  it('bounds the calls anonymous callers make it send: a few at a time per cluster, the rest refused at once', async () => {
    expect((await configure('slow', { mode: 'token_review', kubeCredentials: 'held' })).status).toBe(200);
    const agent = from('127.0.91.5');
    const done: { status: number; code?: string }[] = [];
    const all = await Promise.all(Array.from({ length: 24 }, () => psat()));
    const pending = all.map((token) => attempt('slow', agent, token).then((r) => {
      done.push({ status: r.status, code: r.body.code });
      return r;
    }));
    const deadline = Date.now() + 30_000;
    while (!(sink.inFlight === 4 && done.length >= 4)) {
      if (Date.now() > deadline) throw new Error(`stuck: ${sink.inFlight} in flight at the sink, ${done.length} answered`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // 4 at the API server, 16 waiting their turn, the rest refused without reaching it
    expect(done.every((d) => d.status === 503 && d.code === 'attestor_unavailable')).toBe(true);
    sink.release();
    const results = await Promise.all(pending);
    expect(results.every((r) => r.status === 401 || r.status === 503)).toBe(true);
    expect(sink.maxInFlight).toBeLessThanOrEqual(4);
    expect(sink.count('tok-hold')).toBeLessThanOrEqual(20);
  });

  it('stops calling a failing API server for a while (circuit breaker), per cluster', async () => {
    expect((await configure('down', { mode: 'token_review', kubeCredentials: 'failing-too' })).status).toBe(200);
    expect((await configure('up', { mode: 'token_review', kubeCredentials: 'good' })).status).toBe(200);
    const agent = from('127.0.91.6');
    const base = sink.count('tok-500');
    for (let i = 0; i < 3; i++) expect((await attempt('down', agent, await psat())).status).toBe(503);
    expect(sink.count('tok-500')).toBe(base + 3);
    for (let i = 0; i < 5; i++) {
      const res = await attempt('down', agent, await psat());
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('attestor_unavailable');
    }
    expect(sink.count('tok-500')).toBe(base + 3); // the circuit is open: nothing sent
    // another cluster is not affected
    expect((await attempt('up', agent, await psat('up-node-1'))).status).toBe(201);
    // after the cool-down one probe goes through; it fails, so the circuit opens again
    clock.advance(11);
    expect((await attempt('down', agent, await psat())).status).toBe(503);
    expect(sink.count('tok-500')).toBe(base + 4);
    expect((await attempt('down', agent, await psat())).status).toBe(503);
    expect(sink.count('tok-500')).toBe(base + 4);
  });

  it('a configuration the migration disabled (it named host files) is never used', async () => {
    await ca.handle.db.query(
      `INSERT INTO node_attestors (trust_domain, kind, name, config, created_at, updated_at) VALUES ($1, 'k8s_psat', 'legacy', $2, now(), now())`,
      [TD, JSON.stringify({ mode: 'token_review', audience: 'cairn-ca', allowedServiceAccounts: ['cairn:cairn-agent'], disabled: 'this cluster named files on the CA host', legacy: { apiServer: sink.url, apiTokenFile: join(ca.dataDir, 'kek') } })],
    );
    const seen = sink.seen.length;
    const res = await attempt('legacy', from('127.0.91.7'), await psat());
    expect(res.status).toBe(503);
    expect(res.body.code).toBe('attestor_unavailable');
    expect(sink.seen.length).toBe(seen);
    expect(ca.logs()).toContain('attestor.disabled');
  });
});

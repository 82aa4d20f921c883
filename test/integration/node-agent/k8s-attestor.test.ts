import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { K8sWorkloadAttestor, KubeletClient, type KubeletClientOptions } from '../../../node-agent/caller/k8s-attestor.js';
import { renderIdTemplate } from '../../../contract/id-template.js';
import { FakeClock } from '../../support/clock.js';

const NODE = 'worker-1';
const WEB_UID = '6b3f5c9e-2d1a-4f7b-9c3e-8a1d2e4f5b6c';
const JOB_UID = 'd41c8e2a-7f3b-4e9d-a1c5-3b2e6f8d9a0e';
const NEW_UID = '0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f';
const id = (c: string): string => c.repeat(64);
const WEB_APP = id('a');
const WEB_PROXY = id('b');
const JOB_INIT = id('c');
const JOB_MAIN = id('d');
const NEW_MAIN = id('e');
const GOOD_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.kubelet-reader.sig';

function pod(name: string, ns: string, uid: string, extra: { labels: Record<string, string>; sa: string; containers: { name: string; image: string; statusImage: string; cid?: string; init?: boolean }[] }): object {
  const spec = (init: boolean) =>
    extra.containers.filter((c) => !!c.init === init).map((c) => ({
      name: c.name,
      image: c.image,
      imagePullPolicy: 'IfNotPresent',
      resources: {},
      terminationMessagePath: '/dev/termination-log',
      volumeMounts: [{ name: 'kube-api-access-x7k2p', readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }],
    }));
  const status = (init: boolean) =>
    extra.containers.filter((c) => !!c.init === init).map((c) => ({
      name: c.name,
      state: c.cid ? { running: { startedAt: '2026-06-01T11:58:02Z' } } : { waiting: { reason: 'ContainerCreating' } },
      lastState: {},
      ready: !!c.cid,
      restartCount: 0,
      image: c.statusImage,
      imageID: c.cid ? `${c.statusImage.replace(/:[^:/]+$/, '')}@sha256:${'9'.repeat(64)}` : '',
      ...(c.cid ? { containerID: `containerd://${c.cid}`, started: true } : { started: false }),
    }));
  return {
    metadata: {
      name,
      generateName: name.replace(/[^-]+$/, ''),
      namespace: ns,
      uid,
      resourceVersion: '48213',
      creationTimestamp: '2026-06-01T11:57:58Z',
      labels: extra.labels,
      annotations: { 'kubernetes.io/config.seen': '2026-06-01T11:57:58.123456789Z', 'kubernetes.io/config.source': 'api' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: name.replace(/-[^-]+$/, ''), uid: '11111111-2222-3333-4444-555555555555', controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      volumes: [{ name: 'kube-api-access-x7k2p', projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }], defaultMode: 420 } }],
      initContainers: spec(true),
      containers: spec(false),
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: extra.sa,
      serviceAccount: extra.sa,
      nodeName: NODE,
      securityContext: {},
      schedulerName: 'default-scheduler',
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    },
    status: {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: '2026-06-01T11:58:03Z' }],
      hostIP: '10.0.0.11',
      podIP: '10.244.1.17',
      podIPs: [{ ip: '10.244.1.17' }],
      startTime: '2026-06-01T11:57:58Z',
      initContainerStatuses: status(true),
      containerStatuses: status(false),
      qosClass: 'Burstable',
    },
  };
}

const WEB = pod('web-7d4b9c8f6-x2k9q', 'shop', WEB_UID, {
  labels: { app: 'web', 'pod-template-hash': '7d4b9c8f6', 'app.kubernetes.io/part-of': 'shop' },
  sa: 'web',
  containers: [
    { name: 'app', image: 'ghcr.io/acme/web:1.4.2', statusImage: 'ghcr.io/acme/web:1.4.2', cid: WEB_APP },
    { name: 'proxy', image: 'envoyproxy/envoy:v1.31.0', statusImage: 'docker.io/envoyproxy/envoy:v1.31.0', cid: WEB_PROXY },
  ],
});
const JOB = pod('report-28713640-abcde', 'batch', JOB_UID, {
  labels: { 'batch.kubernetes.io/job-name': 'report-28713640' },
  sa: 'reporter',
  containers: [
    { name: 'migrate', image: 'busybox:1.36', statusImage: 'docker.io/library/busybox:1.36', cid: JOB_INIT, init: true },
    { name: 'report', image: 'ghcr.io/acme/report:2.0.0', statusImage: 'ghcr.io/acme/report:2.0.0', init: false },
  ],
});
const NEW = pod('api-5f6d7c8b9-q7w8e', 'shop', NEW_UID, {
  labels: { app: 'api' },
  sa: 'api',
  containers: [{ name: 'api', image: 'ghcr.io/acme/api:3.1.0', statusImage: 'ghcr.io/acme/api:3.1.0', cid: NEW_MAIN }],
});
const podList = (...items: object[]): object => ({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items });

describe('the k8s workload attestor against an HTTPS kubelet', () => {
  let dir: string;
  let server: Server;
  let url: string;
  let requests: number;
  let authHeaders: (string | undefined)[];
  let answer: (n: number) => object | 'hang';
  let clock: FakeClock;
  const clients: KubeletClient[] = [];

  const proc = (pid: number, cgroup: string): void => {
    mkdirSync(join(dir, 'proc', String(pid)), { recursive: true });
    writeFileSync(join(dir, 'proc', String(pid), 'cgroup'), cgroup);
  };
  const v2 = (uid: string, cid: string): string =>
    `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-${cid}.scope\n`;

  const client = (o: Partial<KubeletClientOptions> = {}): KubeletClient => {
    const c = new KubeletClient({ url, tokenFile: join(dir, 'token'), caFile: join(dir, 'ca.pem'), clock, ...o });
    clients.push(c);
    return c;
  };
  const attestor = (c: KubeletClient, maxAttempts = 5): K8sWorkloadAttestor =>
    new K8sWorkloadAttestor({ pods: c, procRoot: join(dir, 'proc'), maxAttempts, retryDelayMs: 5, maxRetryDelayMs: 20 });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-k8s-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    // a cluster CA and a kubelet serving certificate it signed, as kubeadm's serverTLSBootstrap gives
    ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=kubernetes');
    ssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'kubelet.key', '-out', 'kubelet.csr', '-subj', `/O=system:nodes/CN=system:node:${NODE}`);
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:worker-1\nextendedKeyUsage=serverAuth\n');
    ssl('x509', '-req', '-in', 'kubelet.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'kubelet.pem', '-days', '1', '-extfile', 'ext.cnf');

    server = createServer({ key: readFileSync(join(dir, 'kubelet.key')), cert: readFileSync(join(dir, 'kubelet.pem')) }, (req, res) => {
      if (req.method !== 'GET' || req.url !== '/pods') {
        res.writeHead(404).end('404 page not found\n');
        return;
      }
      requests++;
      authHeaders.push(req.headers.authorization);
      if (req.headers.authorization !== `Bearer ${GOOD_TOKEN}`) {
        res.writeHead(401, { 'content-type': 'text/plain' }).end('Unauthorized');
        return;
      }
      const body = answer(requests);
      if (body === 'hang') return;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

    proc(100, v2(WEB_UID, WEB_APP));
    proc(101, v2(WEB_UID, WEB_PROXY));
    proc(102, `0::/kubepods/besteffort/pod${JOB_UID}/${JOB_INIT}\n`);
    proc(103, v2(JOB_UID, JOB_MAIN));
    proc(104, v2(NEW_UID, NEW_MAIN));
    proc(200, v2(WEB_UID, id('f')));
    proc(300, '0::/user.slice/user-1000.slice/session-2.scope\n');
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    requests = 0;
    authHeaders = [];
    answer = () => podList(WEB, JOB);
    clock = new FakeClock();
    writeFileSync(join(dir, 'token'), `${GOOD_TOKEN}\n`);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    server.closeAllConnections();
  });

  it('names the caller’s pod and container', async () => {
    expect(await attestor(client()).selectors({ pid: 100, uid: 1000, gid: 1000 })).toEqual(
      [
        'k8s:ns:shop', 'k8s:sa:web', 'k8s:pod-name:web-7d4b9c8f6-x2k9q', `k8s:pod-uid:${WEB_UID}`,
        'k8s:pod-label:app:web', 'k8s:pod-label:pod-template-hash:7d4b9c8f6', 'k8s:pod-label:app.kubernetes.io/part-of:shop',
        'k8s:container-name:app', 'k8s:container-image:ghcr.io/acme/web:1.4.2', `k8s:container-image:ghcr.io/acme/web@sha256:${'9'.repeat(64)}`,
        `k8s:node-name:${NODE}`,
      ].sort(),
    );
    expect(authHeaders).toEqual([`Bearer ${GOOD_TOKEN}`]);
  });

  it("its selectors render Istio's template, so one template serves every pod; a selector the kubelet gives twice is refused, not guessed", async () => {
    const selectors = await attestor(client()).selectors({ pid: 100, uid: 1000, gid: 1000 });
    const rendered = renderIdTemplate('spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}', ['{k8s:pod-name}.{k8s:ns}.svc'], 'example.org', selectors);
    expect(rendered).toEqual({ ok: true, spiffeId: 'spiffe://example.org/ns/shop/sa/web', dnsNames: ['web-7d4b9c8f6-x2k9q.shop.svc'], used: ['k8s:ns:shop', 'k8s:sa:web', 'k8s:pod-name:web-7d4b9c8f6-x2k9q'] });
    // a pod has two images (resolved and requested): {k8s:container-image} has no one value to take
    expect(renderIdTemplate('spiffe://{td}/img/{k8s:container-image}', [], 'example.org', selectors)).toEqual({ ok: false, reason: 'the caller has 2 k8s:container-image selectors: placeholder {k8s:container-image} needs exactly one' });
    // a process outside Kubernetes has no k8s selectors: the template refuses with the reason
    const outside = await attestor(client()).selectors({ pid: 300, uid: 1000, gid: 1000 });
    expect(renderIdTemplate('spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}', [], 'example.org', outside)).toEqual({ ok: false, reason: 'the caller has no k8s:ns selector for placeholder {k8s:ns}' });
  });

  it('tells containers of one pod apart, and gives both the resolved and the requested image', async () => {
    const s = await attestor(client()).selectors({ pid: 101, uid: 1000, gid: 1000 });
    expect(s).toContain('k8s:container-name:proxy');
    expect(s).not.toContain('k8s:container-name:app');
    expect(s).toEqual(expect.arrayContaining(['k8s:container-image:docker.io/envoyproxy/envoy:v1.31.0', 'k8s:container-image:envoyproxy/envoy:v1.31.0']));
  });

  it('finds init containers (cgroupfs driver path) too', async () => {
    const s = await attestor(client()).selectors({ pid: 102, uid: 0, gid: 0 });
    expect(s).toEqual(expect.arrayContaining(['k8s:ns:batch', 'k8s:sa:reporter', 'k8s:container-name:migrate', 'k8s:pod-label:batch.kubernetes.io/job-name:report-28713640', 'k8s:container-image:busybox:1.36']));
  });

  it('gives a container the kubelet never lists no selectors, after retrying with fresh lists', async () => {
    expect(await attestor(client(), 4).selectors({ pid: 200, uid: 1000, gid: 1000 })).toEqual([]);
    expect(requests).toBe(4);
    // a container whose status has no ID yet is retried the same way
    expect(await attestor(client(), 3).selectors({ pid: 103, uid: 1000, gid: 1000 })).toEqual([]);
    expect(requests).toBe(7);
  });

  it('gives a process outside Kubernetes no selectors without asking the kubelet', async () => {
    const a = attestor(client());
    expect(await a.selectors({ pid: 300, uid: 1000, gid: 1000 })).toEqual([]);
    expect(await a.selectors({ pid: 999, uid: 1000, gid: 1000 })).toEqual([]);
    expect(requests).toBe(0);
  });

  it('asks the kubelet once per cacheMs', async () => {
    const a = attestor(client({ cacheMs: 1000 }));
    const [x, y] = await Promise.all([a.selectors({ pid: 100, uid: 1, gid: 1 }), a.selectors({ pid: 101, uid: 1, gid: 1 })]);
    expect(await a.selectors({ pid: 102, uid: 1, gid: 1 })).toContain('k8s:container-name:migrate');
    expect(x).toContain('k8s:container-name:app');
    expect(y).toContain('k8s:container-name:proxy');
    expect(requests).toBe(1);
    clock.advance(0.9);
    await a.selectors({ pid: 100, uid: 1, gid: 1 });
    expect(requests).toBe(1);
    clock.advance(0.2);
    await a.selectors({ pid: 100, uid: 1, gid: 1 });
    expect(requests).toBe(2);
  });

  it('waits for a just-started pod to reach the kubelet’s list', async () => {
    answer = (n) => (n >= 3 ? podList(WEB, JOB, NEW) : podList(WEB, JOB));
    const s = await attestor(client()).selectors({ pid: 104, uid: 1000, gid: 1000 });
    expect(s).toEqual(expect.arrayContaining(['k8s:pod-name:api-5f6d7c8b9-q7w8e', 'k8s:container-name:api', `k8s:pod-uid:${NEW_UID}`]));
    expect(requests).toBe(3);
  });

  it('reads the token on every fetch, so a rotated token is used at once', async () => {
    const c = client({ cacheMs: 0 });
    await c.pods();
    writeFileSync(join(dir, 'token'), 'rotated-token\n');
    await expect(c.pods()).rejects.toThrow(/401/);
    expect(authHeaders).toEqual([`Bearer ${GOOD_TOKEN}`, 'Bearer rotated-token']);
  });

  it('fails clearly, and at once, on a token the kubelet refuses', async () => {
    writeFileSync(join(dir, 'token'), 'wrong-token\n');
    const err = await attestor(client()).selectors({ pid: 100, uid: 1, gid: 1 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/k8s attestation failed.*kubelet at https:\/\/127\.0\.0\.1:\d+ answered 401/);
    expect((err as Error).message).not.toContain('wrong-token');
    expect(requests).toBe(1);
  });

  it('trusts the kubelet only through caFile, unless told to skip verification', async () => {
    const untrusted = client({ caFile: undefined });
    const err = await attestor(untrusted, 2).selectors({ pid: 100, uid: 1, gid: 1 }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/k8s attestation failed: cannot list pods.*cannot reach the kubelet.*(certificate|issuer)/);
    expect(requests).toBe(0);
    expect(await attestor(client({ caFile: undefined, skipVerify: true })).selectors({ pid: 100, uid: 1, gid: 1 })).toContain('k8s:sa:web');
    expect(requests).toBe(1);
  });

  it('checks the kubelet certificate\'s name too: one the cluster CA signed for another address is refused', async () => {
    // kubelet.pem names IP 127.0.0.1 and DNS worker-1, not localhost: as another node's certificate would
    const elsewhere = client({ url: url.replace('127.0.0.1', 'localhost') });
    const err = await attestor(elsewhere, 2).selectors({ pid: 100, uid: 1, gid: 1 }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/cannot reach the kubelet.*(altnames|Hostname\/IP does not match)/);
    expect(requests).toBe(0);
  });

  it('gives up on an unreachable or silent kubelet with an error that says so', async () => {
    const closed = `https://127.0.0.1:${(server.address() as AddressInfo).port + 1}`;
    await expect(attestor(client({ url: closed }), 3).selectors({ pid: 100, uid: 1, gid: 1 })).rejects.toThrow(/cannot reach the kubelet at https:\/\/127\.0\.0\.1/);
    answer = () => 'hang';
    await expect(attestor(client({ timeoutMs: 100 }), 2).selectors({ pid: 100, uid: 1, gid: 1 })).rejects.toThrow(/did not answer GET \/pods within 100 ms/);
    expect(requests).toBe(2);
  });

  it('refuses a kubelet URL that would send the token in clear', () => {
    expect(() => new KubeletClient({ url: 'http://127.0.0.1:10255', clock: new FakeClock() })).toThrow(/https/);
  });
});

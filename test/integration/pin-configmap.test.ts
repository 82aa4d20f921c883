import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PinConfigMapPublisher } from '../../ca/pin-configmap/publisher.js';
import type { KubeCredentialSet } from '../../ca/node-attestation/kube-credentials.js';
import { capturingLogger } from '../support/logs.js';
import { startTestCa } from '../support/ca.js';
import { runCairn } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

type ConfigMap = { apiVersion: string; kind: string; metadata: { name: string; namespace: string; resourceVersion: string; labels?: Record<string, string>; annotations?: Record<string, string> }; data: Record<string, string> };

/**
 * The part of a Kubernetes API server the publisher talks to, over real TLS with a bearer token:
 * ConfigMaps in one namespace, with resourceVersion conflicts as the API server enforces them.
 */
class FakeApiServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'cairn-kube-api-'));
  readonly maps = new Map<string, ConfigMap>();
  readonly requests: string[] = [];
  /** Answer every request with this status instead (e.g. 403 before the Role is bound). */
  refuse: number | undefined;
  private version = 1;
  private server!: Server;
  readonly token = 'kube-token-for-the-ca-service-account';

  async start(): Promise<void> {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'api.key', '-out', 'api.pem', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: this.dir, stdio: 'pipe' });
    writeFileSync(join(this.dir, 'token'), this.token + '\n');
    this.server = createServer({ key: readFileSync(join(this.dir, 'api.key')), cert: readFileSync(join(this.dir, 'api.pem')) }, (req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  credentials(name = 'test-cluster'): KubeCredentialSet {
    return { name, apiServer: `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`, tokenFile: join(this.dir, 'token'), caFile: join(this.dir, 'api.pem') };
  }

  credentialFlag(name = 'test-cluster'): string {
    const c = this.credentials(name);
    return `${name}=api-server=${c.apiServer},token-file=${c.tokenFile},ca-file=${c.caFile}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body = '';
    for await (const chunk of req) body += chunk;
    this.requests.push(`${req.method} ${req.url}`);
    const send = (status: number, obj: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    if (req.headers.authorization !== `Bearer ${this.token}`) return send(401, { kind: 'Status', code: 401 });
    if (this.refuse) return send(this.refuse, { kind: 'Status', code: this.refuse });
    const one = /^\/api\/v1\/namespaces\/([^/]+)\/configmaps\/([^/]+)$/.exec(req.url ?? '');
    const collection = /^\/api\/v1\/namespaces\/([^/]+)\/configmaps$/.exec(req.url ?? '');
    if (req.method === 'GET' && one) {
      const cm = this.maps.get(`${one[1]}/${one[2]}`);
      return cm ? send(200, cm) : send(404, { kind: 'Status', code: 404 });
    }
    if (req.method === 'POST' && collection) {
      const cm = JSON.parse(body) as ConfigMap;
      const key = `${collection[1]}/${cm.metadata.name}`;
      if (cm.metadata.namespace !== collection[1]) return send(400, { kind: 'Status', code: 400 });
      if (this.maps.has(key)) return send(409, { kind: 'Status', code: 409 });
      cm.metadata.resourceVersion = String(this.version++);
      this.maps.set(key, cm);
      return send(201, cm);
    }
    if (req.method === 'PUT' && one) {
      const key = `${one[1]}/${one[2]}`;
      const cm = JSON.parse(body) as ConfigMap;
      const existing = this.maps.get(key);
      if (!existing) return send(404, { kind: 'Status', code: 404 });
      if (cm.metadata.resourceVersion !== existing.metadata.resourceVersion) return send(409, { kind: 'Status', code: 409 });
      cm.metadata.resourceVersion = String(this.version++);
      this.maps.set(key, cm);
      return send(200, cm);
    }
    return send(405, { kind: 'Status', code: 405 });
  }

  put(namespace: string, cm: Omit<ConfigMap, 'metadata'> & { metadata: Omit<ConfigMap['metadata'], 'resourceVersion'> }): void {
    this.maps.set(`${namespace}/${cm.metadata.name}`, { ...cm, metadata: { ...cm.metadata, resourceVersion: String(this.version++) } });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

describe('the CA publishes its TLS URL and pin to a ConfigMap (ca start --pin-configmap)', () => {
  const api = new FakeApiServer();
  beforeAll(() => api.start());
  afterAll(() => api.close());

  it('creates the ConfigMap at start with what agents need (ca-url, ca-pin), over TLS with the credential set', async () => {
    const ca = await startTestCa({ kubeCredentials: [api.credentials()], config: { tlsPublicUrl: 'https://cairn-ca.cairn.svc:8443', pinConfigMap: { namespace: 'cairn', name: 'cairn-ca-pin', credentials: 'test-cluster' } } });
    try {
      await waitFor('the ConfigMap to be created', () => api.maps.has('cairn/cairn-ca-pin') || undefined, 20_000);
      const cm = api.maps.get('cairn/cairn-ca-pin')!;
      expect(cm.data).toEqual({ 'ca-url': 'https://cairn-ca.cairn.svc:8443', 'ca-pin': ca.handle.tlsPin });
      expect(cm.data['ca-pin']).toMatch(/^sha256:[A-Za-z0-9_-]{43}$/);
      expect(cm.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'cairn-ca' });
      // the pin is the one the admin API reports to `cairn ca pin`
      const tls = (await (await ca.admin('/v1/ca/tls')).json()) as { pin: string };
      expect(tls.pin).toBe(cm.data['ca-pin']);
      expect(ca.logs()).toMatch(/published to ConfigMap cairn\/cairn-ca-pin/);
      expect(ca.logs()).not.toContain(api.token);
    } finally {
      await ca.close();
    }
  });

  it('replaces a stale pin, keeping what others put on the object; leaves a current one alone', async () => {
    api.put('cairn', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'stale', namespace: 'cairn', labels: { team: 'platform' }, annotations: { note: 'kept' } }, data: { 'ca-url': 'https://old:8443', 'ca-pin': 'sha256:old', extra: 'kept' } });
    const { logger } = capturingLogger();
    const doc = { 'ca-url': 'https://cairn-ca.cairn.svc:8443', 'ca-pin': 'sha256:' + 'A'.repeat(43) };
    const publisher = new PinConfigMapPublisher({ target: { namespace: 'cairn', name: 'stale', credentials: api.credentials() }, document: async () => doc, logger });
    expect(await publisher.publish()).toBe('updated');
    const cm = api.maps.get('cairn/stale')!;
    expect(cm.data).toEqual({ ...doc, extra: 'kept' });
    expect(cm.metadata.labels).toMatchObject({ team: 'platform', 'app.kubernetes.io/managed-by': 'cairn-ca' });
    expect(cm.metadata.annotations).toEqual({ note: 'kept' });
    const before = api.requests.length;
    expect(await publisher.publish()).toBe('unchanged');
    expect(api.requests.slice(before)).toEqual(['GET /api/v1/namespaces/cairn/configmaps/stale']);
    // deleted behind its back: created again
    api.maps.delete('cairn/stale');
    expect(await publisher.publish()).toBe('created');
  });

  it('a refusing API server is one clear error line per attempt; the publisher retries and succeeds once allowed', async () => {
    const { logger, text } = capturingLogger();
    api.refuse = 403;
    const stop = new AbortController();
    const publisher = new PinConfigMapPublisher({ target: { namespace: 'cairn', name: 'later', credentials: api.credentials() }, document: async () => ({ 'ca-url': 'https://x:8443', 'ca-pin': 'sha256:x' }), logger, firstRetryMs: 50, republishMs: 60_000 });
    const running = publisher.run(stop.signal);
    try {
      await waitFor('the refusal to be logged', () => /HTTP 403/.test(text()) || undefined, 10_000);
      const messages = text().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(messages[0]).toMatch(/^could not publish the CA's pin to ConfigMap cairn\/later: the Kubernetes API answered GET \/api\/v1\/namespaces\/cairn\/configmaps\/later with HTTP 403 \(the credential set "test-cluster" needs get, create and update on this ConfigMap\)/);
      api.refuse = undefined;
      await waitFor('the ConfigMap after the refusal ended', () => api.maps.has('cairn/later') || undefined, 10_000);
    } finally {
      api.refuse = undefined;
      stop.abort();
      await running;
    }
    expect(text()).not.toContain(api.token);
  });

  it('a wrong API server certificate is refused (the credential set\'s CA file is the only trust)', async () => {
    const { logger } = capturingLogger();
    const wrongCa = join(api.dir, 'other.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(api.dir, 'other.key'), '-out', wrongCa, '-days', '1', '-subj', '/CN=other'], { stdio: 'pipe' });
    const publisher = new PinConfigMapPublisher({ target: { namespace: 'cairn', name: 'mitm', credentials: { ...api.credentials(), caFile: wrongCa } }, document: async () => ({ 'ca-url': 'https://x:8443', 'ca-pin': 'sha256:x' }), logger });
    await expect(publisher.publish()).rejects.toThrow(/did not answer GET .*(self-signed|unable to verify|certificate)/);
    expect(api.maps.has('cairn/mitm')).toBe(false);
  });

  it('ca start refuses bad settings before opening anything, naming the flag', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-pin-flags-'));
    try {
      const base = ['ca', 'start', '--data-dir', dir, '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'];
      const bad = runCairn([...base, '--pin-configmap', 'Cairn/pin'], {});
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/^error: --pin-configmap "Cairn" is not a Kubernetes namespace name/m);
      const shape = runCairn([...base, '--pin-configmap', 'just-a-name'], {});
      expect(shape.stderr).toMatch(/^error: --pin-configmap "just-a-name" is not NAMESPACE\/NAME/m);
      const unknown = runCairn([...base, '--pin-configmap', 'cairn/cairn-ca-pin', '--pin-configmap-credentials', 'prod'], {});
      expect(unknown.status).toBe(2);
      expect(unknown.stderr).toMatch(/^error: --pin-configmap-credentials: no credential set "prod"/m);
      const alone = runCairn([...base, '--pin-configmap-credentials', 'in-cluster'], {});
      expect(alone.stderr).toMatch(/^error: --pin-configmap-credentials needs --pin-configmap/m);
      const defined = runCairn([...base, '--kube-credentials', api.credentialFlag('prod'), '--pin-configmap', 'cairn/cairn-ca-pin', '--pin-configmap-credentials', 'prod', '--tls-listen', 'not-an-address'], {});
      expect(defined.stderr).not.toMatch(/pin-configmap/); // the set is known: the next problem is another flag's
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

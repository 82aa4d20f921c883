import { mkdtempSync, rmSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bundle } from '../../../spiffe/bundle/bundle.js';
import { loadPeerCredentialSource } from '../../../node-agent/platform/peercred.js';
import type { WorkloadApiPorts, WorkloadSnapshot } from '../../../workload-api/ports.js';
import type { SdsNack } from '../../../workload-api/sds/service.js';
import { startWorkloadApiServer, type WorkloadApiServer } from '../../../workload-api/server.js';
import { fetchSecrets, grpc, pemOf, Recorder, sdsClient, SECRET_TYPE, type DiscoveryResponseWire } from '../../support/envoy-sds.js';
import { waitFor } from '../../support/wait.js';

/**
 * The SDS service on the real Workload API server (a Unix socket, the kernel's peer credentials),
 * with a fake agent behind it whose state the test changes: pushes, shutdown, a NACK flood, bytes
 * that are not a DiscoveryRequest, and an agent that turns SDS off.
 */
const TD = 'sds-int.test';

class FakeAgent {
  private listeners = new Set<() => void>();
  snap: WorkloadSnapshot = { x509Svids: [{ spiffeId: `spiffe://${TD}/w`, chain: [Buffer.from('cert-1')], privateKey: Buffer.from('key-1') }], federatedTrustDomains: [] };
  bundleState: Bundle = { trustDomain: TD, x509Authorities: [Buffer.from('ca-1')], jwtAuthorities: [] };
  readonly peers = loadPeerCredentialSource();

  readonly ports: WorkloadApiPorts = {
    ready: () => true,
    trustDomain: () => TD,
    bundle: (td) => (td === TD ? this.bundleState : undefined),
    now: () => new Date(0),
    onChange: (l) => {
      this.listeners.add(l);
      return () => this.listeners.delete(l);
    },
    attestConnection: (peer) => ({
      workload: async () => ({ snapshot: () => this.snap, jwtSvids: async () => [] }),
      release: () => this.peers.release(peer as never),
    }),
  };

  change(f: () => void): void {
    f();
    for (const l of [...this.listeners]) l();
  }

  listenerCount(): number {
    return this.listeners.size;
  }
}

async function start(agent: FakeAgent, dir: string, name: string, sds?: { onNack: (n: SdsNack) => void } | false): Promise<WorkloadApiServer> {
  return startWorkloadApiServer({ socketPath: join(dir, name), ports: agent.ports, peerOf: (s) => agent.peers.fromSocket(s), releasePeer: (p) => agent.peers.release(p as never), ...(sds === undefined ? {} : { sds }) });
}

describe('Envoy SDS on the Workload API server', () => {
  let dir: string;
  const agent = new FakeAgent();
  const nacks: SdsNack[] = [];
  let server: WorkloadApiServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-sds-int-'));
    server = await start(agent, dir, 'api.sock', { onNack: (n) => nacks.push(n) });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pushes a change of the caller\'s state on the open stream, and nothing for a change that does not alter it', { timeout: 60_000 }, async () => {
    const client = sdsClient(server.socketPath);
    const call = client.StreamSecrets();
    const rec = new Recorder<DiscoveryResponseWire>(call);
    call.write({ node: { id: 'n1' }, resource_names: ['default'], type_url: SECRET_TYPE });
    const first = await rec.next(0);
    call.write({ version_info: first.version_info, response_nonce: first.nonce, resource_names: ['default'], type_url: SECRET_TYPE });
    agent.change(() => (agent.bundleState = { ...agent.bundleState })); // same contents: nothing to send
    agent.change(() => (agent.snap = { ...agent.snap, x509Svids: [{ ...agent.snap.x509Svids[0]!, chain: [Buffer.from('cert-2')] }] }));
    const second = await rec.next(1);
    expect(rec.messages.indexOf(second)).toBe(1);
    expect(pemOf(second.resources[0]!.tls_certificate!.certificate_chain)).toContain(Buffer.from('cert-2').toString('base64'));
    expect(second.version_info).toBe('2');
    // the caller loses its last identity: the stream ends with PermissionDenied, as the Workload API's
    const saved = agent.snap;
    agent.change(() => (agent.snap = { x509Svids: [], federatedTrustDomains: [] }));
    expect((await rec.failure()).code).toBe(grpc.status.PERMISSION_DENIED);
    agent.change(() => (agent.snap = saved));
    client.close();
    await waitFor('the stream to let go of its change listener', () => (agent.listenerCount() === 0 ? true : undefined));
  });

  it('a client repeating a NACK a thousand times is reported once and answered with nothing', { timeout: 60_000 }, async () => {
    const client = sdsClient(server.socketPath);
    const call = client.StreamSecrets();
    const rec = new Recorder<DiscoveryResponseWire>(call);
    call.write({ node: { id: 'flooder' }, resource_names: ['default', 'ROOTCA'], type_url: SECRET_TYPE });
    const first = await rec.next(0);
    for (let i = 0; i < 1000; i++) call.write({ version_info: '', response_nonce: first.nonce, resource_names: ['default', 'ROOTCA'], type_url: SECRET_TYPE, error_detail: { code: 13, message: `no ${i}` } });
    call.write({ version_info: '', response_nonce: first.nonce, resource_names: ['ROOTCA'], type_url: SECRET_TYPE });
    const answer = await rec.next(1);
    expect(rec.messages.indexOf(answer)).toBe(1);
    expect(answer.resources.map((r) => r.name)).toEqual(['ROOTCA']);
    expect(nacks.filter((n) => n.node === 'flooder')).toEqual([{ rpc: 'StreamSecrets', node: 'flooder', resourceNames: ['default', 'ROOTCA'], versionInfo: '', nonce: first.nonce, message: 'no 0' }]);
    client.close();
  });

  it('bytes that are not a DiscoveryRequest get a gRPC error, and the server goes on serving', async () => {
    const s = await new Promise<ReturnType<typeof h2connect>>((resolve, reject) => {
      const session = h2connect('http://localhost', { createConnection: () => netConnect(server.socketPath) });
      session.once('connect', () => resolve(session));
      session.once('error', reject);
    });
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 6]), Buffer.from([0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f])]); // field 3, absurd length
    const status = await new Promise<string>((resolve) => {
      const req = s.request({ ':method': 'POST', ':path': '/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets', 'content-type': 'application/grpc', te: 'trailers' });
      let st = '';
      req.on('response', (h) => (st = String(h['grpc-status'] ?? st)));
      req.on('trailers', (h) => (st = String(h['grpc-status'] ?? st)));
      req.on('close', () => resolve(st));
      req.on('error', () => resolve('transport error'));
      req.resume();
      req.end(frame);
    });
    s.close();
    expect(['3', '13']).toContain(status); // InvalidArgument or Internal, never a crash or a hang
    const client = sdsClient(server.socketPath);
    expect((await fetchSecrets(client, { resource_names: ['ROOTCA'] })).resources).toHaveLength(1);
    client.close();
  });

  it('the server closing ends open SDS streams with Unavailable; an agent with SDS off answers Unimplemented', { timeout: 60_000 }, async () => {
    const other = await start(agent, dir, 'closing.sock');
    const client = sdsClient(other.socketPath);
    const call = client.StreamSecrets();
    const rec = new Recorder<DiscoveryResponseWire>(call);
    call.write({ resource_names: ['default'], type_url: SECRET_TYPE });
    await rec.next(0);
    await other.close();
    expect((await rec.failure()).code).toBe(grpc.status.UNAVAILABLE);
    client.close();

    const off = await start(agent, dir, 'off.sock', false);
    const offClient = sdsClient(off.socketPath);
    try {
      const err = await fetchSecrets(offClient, { resource_names: ['default'] }).then(() => undefined, (e: { code: number }) => e);
      expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
    } finally {
      offClient.close();
      await off.close();
    }
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { connect as h2connect, constants as h2, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPeerCredentialSource } from '../../../node-agent/platform/peercred.js';
import type { WorkloadApiMetrics } from '../../../workload-api/metrics.js';
import type { WorkloadApiPorts, WorkloadSnapshot } from '../../../workload-api/ports.js';
import { startWorkloadApiServer, type WorkloadApiServer } from '../../../workload-api/server.js';
import { MAX_REQUEST_BYTES } from '../../../workload-api/direct/wire.js';
import { firstMessage, grpc, grpcWorkloadClient, securityHeader, type X509SvidWire } from '../../support/grpc-workload.js';
import { waitFor } from '../../support/wait.js';

/**
 * The direct HTTP/2 path that serves FetchX509SVID, FetchX509Bundles, FetchJWTBundles and
 * FetchJWTSVID without connect-node: what a raw HTTP/2 client (and grpc-js) sees at its edges —
 * a caller going away mid-stream, a missing security header, bodies that are garbage or too
 * large, deadlines — and that what it does not take still reaches connect-node.
 */
const TD = 'direct.test';
const X509 = '/SpiffeWorkloadAPI/FetchX509SVID';
const JWT = '/SpiffeWorkloadAPI/FetchJWTSVID';
const EMPTY = Buffer.from([0, 0, 0, 0, 0]);

interface Reply {
  headers: Record<string, unknown> | undefined;
  messages: Buffer[];
  status: string | undefined;
  message: string | undefined;
}

describe('the direct gRPC path of the Workload API', () => {
  let dir: string;
  let server: WorkloadApiServer;
  let session: ClientHttp2Session;
  const listeners = new Set<() => void>();
  let snap: WorkloadSnapshot = { x509Svids: [{ spiffeId: `spiffe://${TD}/w`, chain: [Buffer.from('cert-1')], privateKey: Buffer.from('key') }], federatedTrustDomains: [] };
  const calls: string[] = [];
  const metrics: WorkloadApiMetrics = {
    callStarted: (method) => ({ firstMessage: () => undefined, ended: (code) => calls.push(`${method} ${code}`) }),
  };
  const change = (next: WorkloadSnapshot): void => {
    snap = next;
    listeners.forEach((l) => l());
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-wl-direct-'));
    const peers = loadPeerCredentialSource();
    const ports: WorkloadApiPorts = {
      ready: () => true,
      trustDomain: () => TD,
      bundle: (td) => (td === TD ? { trustDomain: TD, x509Authorities: [Buffer.from('ca')], jwtAuthorities: [] } : undefined),
      now: () => new Date(),
      onChange: (l) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
      attestConnection: (peer) => ({
        workload: async () => ({ snapshot: () => snap, jwtSvids: async (aud) => [{ spiffeId: `spiffe://${TD}/w`, token: `token-for-${aud.join(',')}` }] }),
        release: () => peers.release(peer as never),
      }),
    };
    server = await startWorkloadApiServer({ socketPath: join(dir, 'api.sock'), ports, peerOf: (s) => peers.fromSocket(s), releasePeer: (p) => peers.release(p as never), metrics });
    session = await new Promise<ClientHttp2Session>((resolve, reject) => {
      const s = h2connect('http://localhost', { createConnection: () => netConnect(server.socketPath) });
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
  });
  afterAll(async () => {
    session?.destroy();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** One call on the shared connection; `onMessage` may act on each message as it arrives. */
  const call = (headers: OutgoingHttpHeaders, body: Buffer | undefined, onMessage?: (n: number, stream: ReturnType<ClientHttp2Session['request']>) => void): Promise<Reply> =>
    new Promise((resolve) => {
      const reply: Reply = { headers: undefined, messages: [], status: undefined, message: undefined };
      const req = session.request({ ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true', ...headers });
      let buf = Buffer.alloc(0);
      req.on('response', (h) => (reply.headers = h));
      req.on('trailers', (h) => {
        reply.status = h['grpc-status'] as string;
        reply.message = decodeURIComponent((h['grpc-message'] as string | undefined) ?? '');
      });
      req.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
          reply.messages.push(buf.subarray(5, 5 + buf.readUInt32BE(1)));
          buf = buf.subarray(5 + buf.readUInt32BE(1));
          onMessage?.(reply.messages.length, req);
        }
      });
      req.on('error', () => undefined);
      req.on('close', () => resolve(reply));
      req.end(body);
    });

  it('answers a plain gRPC FetchX509SVID itself, with connect-node\'s headers, and pushes a change', async () => {
    const reply = await call({ ':path': X509 }, EMPTY, (n) => {
      if (n === 1) change({ ...snap, x509Svids: [{ ...snap.x509Svids[0]!, chain: [Buffer.from('cert-2')] }] });
      if (n === 2) change({ ...snap, x509Svids: [] }); // the caller's last identity goes: the stream ends
    });
    expect(reply.headers?.[':status']).toBe(200);
    expect(reply.headers?.['content-type']).toBe('application/grpc+proto');
    expect(reply.messages).toHaveLength(2);
    expect(reply.messages[1]!.includes(Buffer.from('cert-2'))).toBe(true);
    expect([reply.status, reply.message]).toEqual([String(grpc.status.PERMISSION_DENIED), 'no identity issued']);
    change({ ...snap, x509Svids: [{ spiffeId: `spiffe://${TD}/w`, chain: [Buffer.from('cert-1')], privateKey: Buffer.from('key') }] });
  });

  it('lets go of a stream the caller cancels (RST_STREAM) and counts it Canceled', async () => {
    calls.length = 0;
    const reply = await call({ ':path': X509 }, EMPTY, (n, req) => n === 1 && req.close(h2.NGHTTP2_CANCEL));
    expect(reply.messages).toHaveLength(1);
    expect(reply.status).toBeUndefined();
    await waitFor('the stream to let go of its change listener', () => (listeners.size === 0 ? true : undefined));
    await waitFor('the call to be counted', () => (calls.includes('FetchX509SVID Canceled') ? true : undefined));
    // a change after the cancel writes to nobody and breaks nothing
    change({ ...snap });
    expect((await call({ ':path': X509 }, EMPTY, (n, req) => req.close(h2.NGHTTP2_CANCEL))).messages).toHaveLength(1);
  });

  it('refuses a call without the security header with InvalidArgument, on every RPC it serves', async () => {
    for (const path of [X509, '/SpiffeWorkloadAPI/FetchX509Bundles', '/SpiffeWorkloadAPI/FetchJWTBundles']) {
      const reply = await call({ ':path': path, 'workload.spiffe.io': 'false' }, EMPTY);
      expect([path, reply.status, reply.message, reply.messages.length]).toEqual([path, String(grpc.status.INVALID_ARGUMENT), 'security header missing from request', 0]);
    }
    const jwt = await call({ ':path': JWT, 'workload.spiffe.io': undefined }, Buffer.from([0, 0, 0, 0, 5, 0x0a, 3, 0x61, 0x70, 0x69]));
    expect([jwt.status, jwt.message]).toEqual([String(grpc.status.INVALID_ARGUMENT), 'security header missing from request']);
    const client = grpcWorkloadClient(server.socketPath);
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const c = client.FetchX509SVID!({}) as grpc.ClientReadableStream<unknown>;
      c.on('error', resolve);
    });
    client.close();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('refuses garbage, truncated, repeated and oversize request bodies with connect-node\'s statuses, and goes on serving', async () => {
    const cases: [string, Buffer, number, string][] = [
      ['garbage', Buffer.from([0, 0, 0, 0, 3, 0xff, 0xff, 0xff]), grpc.status.INTERNAL, 'parse binary: premature EOF'],
      ['truncated envelope', Buffer.from([0, 0, 0, 0, 10, 1]), grpc.status.INVALID_ARGUMENT, 'protocol error: incomplete envelope'],
      ['two messages', Buffer.concat([EMPTY, EMPTY]), grpc.status.UNIMPLEMENTED, 'protocol error: received extra input message for server-streaming method'],
      ['compressed flag, no encoding', Buffer.from([1, 0, 0, 0, 0]), grpc.status.INTERNAL, 'received compressed envelope, but do not know how to decompress'],
      ['claims 2 GiB', Buffer.from([0, 0x7f, 0xff, 0xff, 0xff, 0]), grpc.status.RESOURCE_EXHAUSTED, `message size is larger than configured readMaxBytes ${MAX_REQUEST_BYTES}`],
    ];
    for (const [name, body, status, message] of cases) {
      const reply = await call({ ':path': X509 }, body);
      expect([name, reply.status, reply.message]).toEqual([name, String(status), message]);
    }
    // more bytes than any allowed message: refused once past the limit, not buffered to the end
    const flood = Buffer.alloc(MAX_REQUEST_BYTES + 64 * 1024);
    flood.writeUInt32BE(MAX_REQUEST_BYTES - 5, 1);
    const big = await call({ ':path': JWT }, flood);
    expect(big.status).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
    const none = await call({ ':path': JWT }, undefined);
    expect([none.status, none.message]).toEqual([String(grpc.status.UNIMPLEMENTED), 'protocol error: missing input message for unary method']);
    const ok = await call({ ':path': JWT }, Buffer.from([0, 0, 0, 0, 5, 0x0a, 3, 0x61, 0x70, 0x69]));
    expect(ok.status).toBe('0');
    expect(ok.messages[0]!.includes(Buffer.from('token-for-api'))).toBe(true);
  });

  it('ends a stream at its deadline with DeadlineExceeded; a malformed grpc-timeout is InvalidArgument', async () => {
    const reply = await call({ ':path': X509, 'grpc-timeout': '300m' }, EMPTY);
    expect(reply.messages).toHaveLength(1);
    expect([reply.status, reply.message]).toEqual([String(grpc.status.DEADLINE_EXCEEDED), 'the operation timed out']);
    const bad = await call({ ':path': X509, 'grpc-timeout': 'soon' }, EMPTY);
    expect([bad.status, bad.message]).toEqual([String(grpc.status.INVALID_ARGUMENT), 'protocol error: invalid grpc timeout value: soon']);
    await waitFor('the streams to let go of their change listeners', () => (listeners.size === 0 ? true : undefined));
    // grpc-js sends its deadline as grpc-timeout, and still gets its first message within it
    const client = grpcWorkloadClient(server.socketPath);
    const first = await new Promise<X509SvidWire[]>((resolve, reject) => {
      const c = client.FetchX509SVID!({}, securityHeader(), { deadline: Date.now() + 30_000 }) as grpc.ClientReadableStream<{ svids: X509SvidWire[] }>;
      c.once('data', (m: { svids: X509SvidWire[] }) => {
        resolve(m.svids);
        c.cancel();
      });
      c.once('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? undefined : reject(e)));
    });
    client.close();
    expect(first.map((s) => s.spiffe_id)).toEqual([`spiffe://${TD}/w`]);
  });

  it('hands what it does not take (gRPC with JSON, other RPCs) to connect-node', async () => {
    const json = await call({ ':path': X509, 'content-type': 'application/grpc+json' }, Buffer.from([0, 0, 0, 0, 2, 0x7b, 0x7d]), (n, req) => req.close(h2.NGHTTP2_CANCEL));
    expect(json.headers?.['content-type']).toBe('application/grpc+json');
    // the whole state in JSON, not `{}`: connect-node serializes JSON itself, field by field
    expect(JSON.parse(json.messages[0]!.toString()).svids).toEqual([expect.objectContaining({ spiffeId: `spiffe://${TD}/w`, x509Svid: Buffer.from('cert-1').toString('base64') })]);
    const bundlesJson = await call({ ':path': '/SpiffeWorkloadAPI/FetchX509Bundles', 'content-type': 'application/grpc+json' }, Buffer.from([0, 0, 0, 0, 2, 0x7b, 0x7d]), (n, req) => req.close(h2.NGHTTP2_CANCEL));
    expect(Object.keys(JSON.parse(bundlesJson.messages[0]!.toString()).bundles)).toEqual([`spiffe://${TD}`]);
    const wit = await call({ ':path': '/SpiffeWorkloadAPI/FetchWITSVID' }, EMPTY);
    expect(wit.status).toBe(String(grpc.status.UNIMPLEMENTED));
    const client = grpcWorkloadClient(server.socketPath);
    const bundles = await firstMessage<{ bundles: Record<string, Buffer> }>(client, 'FetchX509Bundles');
    client.close();
    expect(Object.keys(bundles.bundles)).toEqual([`spiffe://${TD}`]);
  });
});

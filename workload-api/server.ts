import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { createServer as createH2Server, type Http2Server, type ServerHttp2Session } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { createContextValues } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { healthRoutes } from './health.js';
import type { HealthState, PeerInfo, WorkloadApiPorts } from './ports.js';
import { kPeer, workloadApiRoutes } from './service.js';
import { makeDirs } from '../lib/fs.js';

export interface WorkloadApiServerOptions {
  readonly socketPath: string;
  readonly ports: WorkloadApiPorts;
  /** Reads the kernel's credentials of a just-accepted connection (the platform seam). */
  readonly peerOf: (socket: Socket) => PeerInfo | undefined;
  /** Called when a connection closes, to release what peerOf held (e.g. a pidfd). */
  readonly releasePeer?: (peer: PeerInfo) => void;
  /** What grpc.health.v1.Health answers; default: serving once `ports.ready()`. */
  readonly health?: () => HealthState;
}

export interface WorkloadApiServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

const kPeerInfo = Symbol('cairn.peer');

/** Refuses to clobber a live server or a file that is not a socket; removes a stale socket. */
async function clearStaleSocket(path: string): Promise<void> {
  let stat;
  try {
    stat = lstatSync(path);
  } catch {
    return;
  }
  if (!stat.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another server is listening on ${path}`);
  rmSync(path, { force: true });
}

/**
 * The SPIFFE Workload API: gRPC over HTTP/2 cleartext on a Unix socket. The socket is
 * world-connectable on purpose: the kernel's peer credentials, read when each connection is
 * accepted, decide who the caller is, not file modes.
 */
export async function startWorkloadApiServer(options: WorkloadApiServerOptions): Promise<WorkloadApiServer> {
  makeDirs(dirname(options.socketPath), 0o755); // not mkdirSync's recursive: it reports EROFS as ENOENT
  await clearStaleSocket(options.socketPath);
  const api = workloadApiRoutes(options.ports);
  const health = healthRoutes(options.health ?? (() => (options.ports.ready() ? { serving: true } : { serving: false, reason: 'not yet synced' })));
  const handler = connectNodeAdapter({
    routes: (router) => {
      api.routes(router);
      health(router);
    },
    contextValues: (req) => createContextValues().set(kPeer, (req.socket as unknown as Record<symbol, PeerInfo | undefined>)[kPeerInfo]),
  });
  const server: Http2Server = createH2Server({}, handler);
  const sessions = new Set<ServerHttp2Session>();
  server.on('connection', (socket: Socket) => {
    let peer: PeerInfo | undefined;
    try {
      peer = options.peerOf(socket);
    } catch {
      peer = undefined; // no credentials: every call from here answers PermissionDenied
    }
    (socket as unknown as Record<symbol, PeerInfo | undefined>)[kPeerInfo] = peer;
    if (peer && options.releasePeer) socket.once('close', () => options.releasePeer!(peer!));
  });
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A deep backlog: a node's workloads restarting together (or a pod churn) connect in bursts, and
    // a full backlog makes a Unix-socket connect fail at once with EAGAIN rather than wait.
    server.listen({ path: options.socketPath, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(options.socketPath, 0o777);
  return {
    socketPath: options.socketPath,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      api.shutdown();
      // Let the streams write their status, then say GOAWAY; stragglers are cut after 2 s.
      await new Promise((r) => setImmediate(r));
      for (const s of sessions) s.close();
      setTimeout(() => sessions.forEach((s) => s.destroy()), 2000).unref();
      await closed;
      rmSync(options.socketPath, { force: true });
    },
  };
}

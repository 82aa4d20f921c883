import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { createServer as createH2Server, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { createContextValues } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { healthRoutes } from './health.js';
import type { ConnectionAttestation, HealthState, PeerInfo, WorkloadApiPorts } from './ports.js';
import { kCaller } from './connection.js';
import { workloadApiRoutes } from './service.js';
import { makeDirs } from '../lib/fs.js';
import { metricsInterceptor, type WorkloadApiMetrics } from './metrics.js';
import { sdsRoutes, type SdsOptions } from './sds/service.js';
import { directWorkloadApi } from './direct/routes.js';

/** Connections that hold no stream are closed after this long (issue 11: idle sockets cost descriptors). */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** Concurrent connections one uid may hold; more are refused at accept, before anything is read from /proc. */
export const DEFAULT_MAX_CONNECTIONS_PER_UID = 64;

export interface WorkloadApiServerOptions {
  readonly socketPath: string;
  readonly ports: WorkloadApiPorts;
  /** Reads the kernel's credentials of a just-accepted connection (the platform seam; must not read /proc). */
  readonly peerOf: (socket: Socket) => PeerInfo | undefined;
  /** Releases what peerOf held (e.g. a pidfd) for a connection refused before it was attested. */
  readonly releasePeer?: (peer: PeerInfo) => void;
  /** What grpc.health.v1.Health answers; default: serving once `ports.ready()`. */
  readonly health?: () => HealthState;
  /** Close connections without an open stream after this many ms; 0 never. Default 30 s. */
  readonly idleTimeoutMs?: number;
  /** Refuse a uid's connections beyond this many open at once. Default 64. */
  readonly maxConnectionsPerUid?: number;
  /** Observes every call (the agent's Prometheus metrics); absent: no interceptor at all. */
  readonly metrics?: WorkloadApiMetrics | undefined;
  /**
   * Envoy SDS (envoy.service.secret.v3.SecretDiscoveryService) on the same socket, for the same
   * kernel-attested callers; default on (as SPIRE's agent), `false` turns it off.
   */
  readonly sds?: SdsOptions | false;
  /** Told about each refused connection (to log it, rate-limited). */
  readonly onRefused?: (peer: PeerInfo | undefined, reason: 'no_credentials' | 'too_many_connections') => void;
}

export interface WorkloadApiServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

const kCallerOf = Symbol('cairn.caller');

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
 * world-connectable on purpose: the kernel's peer credentials decide who the caller is, not file
 * modes. Each connection is taken by a plain net server first, so it can be counted against its uid
 * and refused (closed) before HTTP/2 or /proc costs anything; accepted ones are attested at once
 * (ports.attestConnection) and handed to the HTTP/2 server. Plain gRPC calls of the four hot RPCs
 * are served by the direct path (./direct/); every other stream goes through connect-node.
 */
export async function startWorkloadApiServer(options: WorkloadApiServerOptions): Promise<WorkloadApiServer> {
  makeDirs(dirname(options.socketPath), 0o755); // not mkdirSync's recursive: it reports EROFS as ENOENT
  await clearStaleSocket(options.socketPath);
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const maxPerUid = options.maxConnectionsPerUid ?? DEFAULT_MAX_CONNECTIONS_PER_UID;
  const api = workloadApiRoutes(options.ports);
  const sds = options.sds === false ? undefined : sdsRoutes(options.ports, options.sds);
  const health = healthRoutes(options.health ?? (() => (options.ports.ready() ? { serving: true } : { serving: false, reason: 'not yet synced' })));
  const handler = connectNodeAdapter({
    ...(options.metrics ? { interceptors: [metricsInterceptor(options.metrics)] } : {}),
    routes: (router) => {
      api.routes(router);
      sds?.routes(router);
      health(router);
    },
    contextValues: (req) => createContextValues().set(kCaller, (req.socket as unknown as Record<symbol, ConnectionAttestation | undefined>)[kCallerOf]),
  });
  // connect-node serves what the direct path hands on (SDS, health, the other RPCs and encodings) through
  // its own HTTP/2 server object, which never listens: it only turns the streams given to it into requests
  const viaConnect: Http2Server = createH2Server({}, handler);
  const direct = directWorkloadApi(api.core, options.metrics);
  const h2: Http2Server = createH2Server({});
  h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    const caller = (stream.session?.socket as unknown as Record<symbol, ConnectionAttestation | undefined> | undefined)?.[kCallerOf];
    if (!direct.handle(stream, headers, caller)) viaConnect.emit('stream', stream, headers, flags, rawHeaders);
  });
  const sessions = new Set<ServerHttp2Session>();
  const perUid = new Map<number, number>();

  const listener: NetServer = createNetServer((socket: Socket) => {
    let peer: PeerInfo | undefined;
    try {
      peer = options.peerOf(socket);
    } catch {
      peer = undefined;
    }
    if (!peer) {
      // no credentials, no identity: nothing a call on it could be answered but PermissionDenied
      options.onRefused?.(undefined, 'no_credentials');
      socket.destroy();
      return;
    }
    const held = perUid.get(peer.uid) ?? 0;
    if (held >= maxPerUid) {
      options.onRefused?.(peer, 'too_many_connections');
      options.releasePeer?.(peer);
      socket.destroy();
      return;
    }
    perUid.set(peer.uid, held + 1);
    const uid = peer.uid;
    let caller: ConnectionAttestation | undefined;
    try {
      caller = options.ports.attestConnection(peer);
    } catch {
      caller = undefined;
    }
    socket.once('close', () => {
      const n = (perUid.get(uid) ?? 1) - 1;
      if (n <= 0) perUid.delete(uid);
      else perUid.set(uid, n);
      if (caller) caller.release();
      else options.releasePeer?.(peer!);
    });
    if (!caller) {
      socket.destroy();
      return;
    }
    (socket as unknown as Record<symbol, ConnectionAttestation | undefined>)[kCallerOf] = caller;
    h2.emit('connection', socket);
  });

  h2.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    if (idleTimeoutMs > 0) closeWhenIdle(session, idleTimeoutMs);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    // A deep backlog: a node's workloads restarting together (or a pod churn) connect in bursts, and
    // a full backlog makes a Unix-socket connect fail at once with EAGAIN rather than wait.
    listener.listen({ path: options.socketPath, backlog: 4096 }, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  chmodSync(options.socketPath, 0o777);
  return {
    socketPath: options.socketPath,
    async close() {
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      api.shutdown();
      sds?.shutdown();
      // Let the streams write their status, then say GOAWAY; stragglers are cut after 2 s.
      await new Promise((r) => setImmediate(r));
      for (const s of sessions) s.close();
      setTimeout(() => sessions.forEach((s) => s.destroy()), 2000).unref();
      await closed;
      rmSync(options.socketPath, { force: true });
    },
  };
}

/**
 * Closes a session once it has held no stream for `ms` (a connection that never sends a byte
 * included). Streams are counted, not bytes: a FetchX509SVID stream may rightly sit silent for
 * hours between rotations.
 */
function closeWhenIdle(session: ServerHttp2Session, ms: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    timer = setTimeout(() => {
      session.close(); // GOAWAY; no stream is open, so the socket goes at once
      setTimeout(() => session.destroy(), 1000).unref(); // a peer that never read the GOAWAY
    }, ms).unref();
  };
  arm();
  session.on('stream', (stream) => {
    if (open++ === 0) clearTimeout(timer);
    stream.once('close', () => {
      if (--open === 0 && !session.closed && !session.destroyed) arm();
    });
  });
  session.once('close', () => clearTimeout(timer));
}

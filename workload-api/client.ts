import { connect as connectSocket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { derToPem } from '../spiffe/bundle/bundle.js';
import { splitDerCertificates } from '../spiffe/svid/x509.js';
import { SpiffeWorkloadAPI, type X509SVIDResponse } from './gen/workload_pb.js';
import { socketPathOf, toWorkloadApiError, WorkloadApiError } from './address.js';

export { socketPathOf, WorkloadApiError } from './address.js';
export { checkHealth, type ServingStatus } from './health-client.js';

/**
 * A small client for the SPIFFE Workload API, for Node services and for our own tools. It speaks to
 * any conforming endpoint (ours or SPIRE's): gRPC over h2c on a Unix socket, security header on every
 * call, streams reconnected with backoff on the statuses the spec says to retry.
 */

/** An X.509-SVID as the Workload API delivers it, DER throughout. */
export interface X509SvidMaterial {
  readonly spiffeId: string;
  /** Leaf first. */
  readonly chain: readonly Buffer[];
  /** Unencrypted PKCS#8. */
  readonly privateKey: Buffer;
  /** CA certificates of the SVID's own trust domain. */
  readonly bundle: readonly Buffer[];
  readonly hint: string;
}

export interface X509Context {
  /** Default identity first. */
  readonly svids: readonly X509SvidMaterial[];
  /** Foreign trust domain SPIFFE ID → its CA certificates. */
  readonly federatedBundles: ReadonlyMap<string, readonly Buffer[]>;
  /** The CRLs (DER) the agent sends in the response's `crl` field. */
  readonly crls: readonly Buffer[];
}

export interface JwtSvidMaterial {
  readonly spiffeId: string;
  readonly token: string;
  readonly hint: string;
}

export interface ValidatedJwt {
  readonly spiffeId: string;
  readonly claims: Record<string, unknown>;
}

/** PEM texts for files: the chain, the key and the bundle, as `spire-agent api fetch x509 -write` leaves them. */
export function x509Pem(svid: X509SvidMaterial): { certificates: string; privateKey: string; bundle: string } {
  return {
    certificates: svid.chain.map((d) => derToPem(d)).join(''),
    privateKey: derToPem(svid.privateKey, 'PRIVATE KEY'),
    bundle: svid.bundle.map((d) => derToPem(d)).join(''),
  };
}

function x509Context(res: X509SVIDResponse): X509Context {
  return {
    svids: res.svids.map((s) => ({
      spiffeId: s.spiffeId,
      chain: splitDerCertificates(Buffer.from(s.x509Svid)),
      privateKey: Buffer.from(s.x509SvidKey),
      bundle: splitDerCertificates(Buffer.from(s.bundle)),
      hint: s.hint,
    })),
    federatedBundles: new Map(Object.entries(res.federatedBundles).map(([td, der]) => [td, splitDerCertificates(Buffer.from(der))])),
    crls: res.crl.map((c) => Buffer.from(c)),
  };
}

function bundleMap(bundles: Record<string, Uint8Array>, decode: (b: Buffer) => unknown): Map<string, unknown> {
  return new Map(Object.entries(bundles).map(([td, b]) => [td, decode(Buffer.from(b))]));
}

export interface WatchOptions {
  readonly signal?: AbortSignal;
  /** Called when a stream fails with a status the spec says to retry; the client then backs off and reconnects. */
  readonly onRetry?: (err: WorkloadApiError, retryInMs: number) => void;
  /** Backoff cap; default 30 s. */
  readonly maxBackoffMs?: number;
}

export class WorkloadApiClient {
  private readonly sessions: Http2SessionManager;
  private readonly rpc: Client<typeof SpiffeWorkloadAPI>;
  private readonly socketPath: string;

  /** `address` is a `unix://` URI or an absolute socket path; default: SPIFFE_ENDPOINT_SOCKET. */
  constructor(address: string | undefined = process.env.SPIFFE_ENDPOINT_SOCKET) {
    if (!address) throw new WorkloadApiError('invalid_argument', 'no workload API address: pass one or set SPIFFE_ENDPOINT_SOCKET', false);
    const socketPath = address.startsWith('/') ? address : socketPathOf(address);
    this.socketPath = socketPath;
    const securityHeader: Interceptor = (next) => (req) => {
      req.header.set('workload.spiffe.io', 'true');
      return next(req);
    };
    // The authority is a placeholder: every connection goes to the socket.
    this.sessions = new Http2SessionManager('http://localhost', { pingIntervalMs: 30_000 }, { createConnection: () => connectSocket(socketPath) });
    const transport = createGrpcTransport({ baseUrl: 'http://localhost', sessionManager: this.sessions, interceptors: [securityHeader] });
    this.rpc = createClient(SpiffeWorkloadAPI, transport);
  }

  /** The current X.509 context: the first message of FetchX509SVID. */
  async fetchX509Context(signal?: AbortSignal): Promise<X509Context> {
    const abort = new AbortController();
    const onAbort = (): void => abort.abort();
    signal?.addEventListener('abort', onAbort);
    try {
      for await (const res of this.rpc.fetchX509SVID({}, { signal: abort.signal })) return x509Context(res);
      throw new WorkloadApiError('unavailable', 'the stream ended without a message', true);
    } catch (err) {
      throw toWorkloadApiError(err, this.socketPath);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      abort.abort();
    }
  }

  /**
   * Every X.509 context as it changes, until `signal` aborts. Retryable failures (the agent restarting,
   * no identity yet) reconnect with capped exponential backoff; others end the iteration with the error.
   */
  async *watchX509Context(options: WatchOptions = {}): AsyncGenerator<X509Context> {
    yield* this.watch((signal) => this.rpc.fetchX509SVID({}, { signal }), x509Context, options);
  }

  /** FetchX509Bundles: trust domain SPIFFE ID → CA certificates, on every change. */
  async *watchX509Bundles(options: WatchOptions = {}): AsyncGenerator<Map<string, Buffer[]>> {
    yield* this.watch(
      (signal) => this.rpc.fetchX509Bundles({}, { signal }),
      (res) => bundleMap(res.bundles, splitDerCertificates) as Map<string, Buffer[]>,
      options,
    );
  }

  /** FetchJWTBundles: trust domain SPIFFE ID → JWKS document, on every change. */
  async *watchJwtBundles(options: WatchOptions = {}): AsyncGenerator<Map<string, { keys: Record<string, unknown>[] }>> {
    yield* this.watch(
      (signal) => this.rpc.fetchJWTBundles({}, { signal }),
      (res) => bundleMap(res.bundles, (b) => JSON.parse(b.toString('utf8'))) as Map<string, { keys: Record<string, unknown>[] }>,
      options,
    );
  }

  /** The current JWT bundles (first message of FetchJWTBundles). */
  async fetchJwtBundles(signal?: AbortSignal): Promise<Map<string, { keys: Record<string, unknown>[] }>> {
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    signal?.addEventListener('abort', onAbort);
    try {
      for await (const bundles of this.watchJwtBundles({ signal: stop.signal, maxBackoffMs: 0 })) return bundles;
      throw new WorkloadApiError('unavailable', 'the stream ended without a message', true);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      stop.abort();
    }
  }

  /** JWT-SVIDs for the audience: one per entitled identity, or only `spiffeId`'s. */
  async fetchJwtSvids(audience: readonly string[], spiffeId?: string): Promise<JwtSvidMaterial[]> {
    try {
      const res = await this.rpc.fetchJWTSVID({ audience: [...audience], spiffeId: spiffeId ?? '' });
      return res.svids.map((s) => ({ spiffeId: s.spiffeId, token: s.svid, hint: s.hint }));
    } catch (err) {
      throw toWorkloadApiError(err, this.socketPath);
    }
  }

  /** Asks the agent to validate a JWT-SVID for one audience against the bundles it holds. */
  async validateJwtSvid(token: string, audience: string): Promise<ValidatedJwt> {
    try {
      const res = await this.rpc.validateJWTSVID({ svid: token, audience });
      return { spiffeId: res.spiffeId, claims: (res.claims ?? {}) as Record<string, unknown> };
    } catch (err) {
      throw toWorkloadApiError(err, this.socketPath);
    }
  }

  close(): void {
    this.sessions.abort();
  }

  private async *watch<R, T>(open: (signal: AbortSignal) => AsyncIterable<R>, decode: (r: R) => T, options: WatchOptions): AsyncGenerator<T> {
    const cap = options.maxBackoffMs ?? 30_000;
    let backoff = 250;
    while (!options.signal?.aborted) {
      const call = new AbortController();
      const onAbort = (): void => call.abort();
      options.signal?.addEventListener('abort', onAbort);
      try {
        for await (const res of open(call.signal)) {
          backoff = 250;
          yield decode(res);
        }
        // A server that ends a stream cleanly is going away; treat it like Unavailable.
        throw new WorkloadApiError('unavailable', 'the workload API closed the stream', true);
      } catch (err) {
        if (options.signal?.aborted) return;
        const e = toWorkloadApiError(err, this.socketPath);
        if (!e.retryable || cap === 0) throw e;
        options.onRetry?.(e, backoff);
        await sleep(backoff, undefined, options.signal ? { signal: options.signal } : undefined).catch(() => undefined);
        backoff = Math.min(backoff * 2, cap);
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
        call.abort();
      }
    }
  }
}


import { create, type JsonObject } from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { validateJwtSvid } from '../spiffe/svid/jwt.js';
import { SpiffeError } from '../spiffe/errors.js';
import { SpiffeId } from '../spiffe/id.js';
import { JWTSVIDResponseSchema, SpiffeWorkloadAPI, ValidateJWTSVIDResponseSchema, type JWTSVIDRequest, type JWTSVIDResponse } from './gen/workload_pb.js';
import { attestationError, kCaller, workloadOf } from './connection.js';
import type { ConnectionAttestation, JwtSvidResult, Workload, WorkloadApiPorts, WorkloadSnapshot } from './ports.js';
import { StateCache, type Encoded, type StateKind, type StateMessages } from './states.js';

export const SECURITY_HEADER = 'workload.spiffe.io';

/**
 * The RPCs' rules, written once for both ways a call arrives (connect-node's pipeline, and the direct
 * HTTP/2 path of ./direct/): each takes the security header's value and the connection's caller.
 */

/** Workload API §5.2: the security header is mandatory; without it the client must not retry. */
export function requireSecurityHeader(value: string | null | undefined): void {
  if (value !== 'true') throw new ConnectError('security header missing from request', Code.InvalidArgument);
}

/** The server going away. Open streams subscribe in O(1) (an AbortSignal's listener list is checked for duplicates on every add). */
export class Shutdown {
  reason: ConnectError | undefined;
  private readonly listeners = new Set<() => void>();

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  trigger(reason: ConnectError): void {
    this.reason ??= reason;
    for (const l of [...this.listeners]) l();
  }
}

/** What both server paths share: the ports, one state cache, one shutdown. */
export interface WorkloadApiCore {
  readonly ports: WorkloadApiPorts;
  readonly cache: StateCache;
  readonly shutdown: Shutdown;
}

/** The caller's workload for a streaming RPC; FetchX509Bundles and FetchJWTBundles also need an identity first. */
export async function openStream(core: WorkloadApiCore, kind: StateKind, header: string | null | undefined, caller: ConnectionAttestation | undefined): Promise<Workload> {
  requireSecurityHeader(header);
  const workload = await workloadOf(core.ports, caller);
  if (kind !== 'x509') hasIdentity(workload);
  return workload;
}

function hasIdentity(workload: Workload): void {
  let snap: WorkloadSnapshot;
  try {
    snap = workload.snapshot();
  } catch (err) {
    throw attestationError(err);
  }
  if (snap.x509Svids.length === 0) throw new ConnectError('no identity issued', Code.PermissionDenied);
}

/** The stream's state now; PermissionDenied once the caller holds no identity (the spec's end of a stream). */
export function currentState<K extends StateKind>(core: WorkloadApiCore, workload: Workload, kind: K): Encoded<StateMessages[K]> {
  let state: Encoded<StateMessages[K]> | undefined;
  try {
    state = core.cache.get(workload.snapshot(), kind);
  } catch (err) {
    throw attestationError(err);
  }
  if (state === undefined) throw new ConnectError('no identity issued', Code.PermissionDenied);
  return state;
}

/** FetchJWTSVID's rules and answer, before it is made a message (the direct path encodes each answer once). */
export async function jwtSvidsFor(core: WorkloadApiCore, req: JWTSVIDRequest, header: string | null | undefined, caller: ConnectionAttestation | undefined): Promise<readonly JwtSvidResult[]> {
  requireSecurityHeader(header);
  const audience = req.audience.filter((a) => a !== '');
  if (audience.length === 0) throw new ConnectError('audience must be specified', Code.InvalidArgument);
  if (req.spiffeId !== '') {
    try {
      SpiffeId.parse(req.spiffeId);
    } catch (err) {
      throw new ConnectError(`invalid requested SPIFFE ID: ${(err as Error).message}`, Code.InvalidArgument);
    }
  }
  const workload = await workloadOf(core.ports, caller);
  hasIdentity(workload);
  let svids;
  try {
    svids = await workload.jwtSvids(audience, req.spiffeId || undefined);
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    throw new ConnectError('could not mint a JWT-SVID', Code.Unavailable, undefined, undefined, err);
  }
  if (svids.length === 0) throw new ConnectError('no identity issued', Code.PermissionDenied);
  return svids;
}

export const jwtSvidResponse = (svids: readonly JwtSvidResult[]): JWTSVIDResponse =>
  create(JWTSVIDResponseSchema, { svids: svids.map((s) => ({ spiffeId: s.spiffeId, svid: s.token, hint: s.hint ?? '' })) });

/**
 * A stream of complete states for connect-node's pipeline: the first immediately, then one after
 * every change that alters it (duplicates suppressed); the server's shutdown ends it with Unavailable.
 */
async function* states<K extends StateKind>(core: WorkloadApiCore, ctx: HandlerContext, workload: Workload, kind: K): AsyncGenerator<StateMessages[K]> {
  const { ports, shutdown } = core;
  let wake: (() => void) | undefined;
  let dirty = true;
  const unsubscribe = ports.onChange(() => {
    dirty = true;
    wake?.();
  });
  const onAbort = (): void => wake?.();
  const unsubscribeShutdown = shutdown.subscribe(onAbort);
  ctx.signal.addEventListener('abort', onAbort);
  let last: Uint8Array | undefined;
  // JSON is written from a message's fields: the pre-encoded message's fields are unknown, so `{}`
  const json = /json/i.test(ctx.requestHeader.get('content-type') ?? '');
  try {
    for (;;) {
      if (shutdown.reason) throw shutdown.reason;
      if (ctx.signal.aborted) return; // the client went away
      if (dirty) {
        dirty = false;
        const state = currentState(core, workload, kind);
        if (state.bytes !== last && (!last || Buffer.compare(state.bytes, last) !== 0)) {
          last = state.bytes;
          yield json ? state.fields : state.message;
        }
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        if (dirty || ctx.signal.aborted || shutdown.reason) resolve();
      });
      wake = undefined;
    }
  } finally {
    unsubscribe();
    unsubscribeShutdown();
    ctx.signal.removeEventListener('abort', onAbort);
  }
}

export interface WorkloadApiHandlers {
  readonly routes: (router: ConnectRouter) => void;
  readonly core: WorkloadApiCore;
  /** Ends every open stream, and any opened after, with Unavailable (clients retry with backoff). */
  shutdown(): void;
}

/**
 * The Workload API on connect-node. The hot RPCs usually arrive on the direct path instead (see
 * ./direct/); these handlers serve what that path hands on (gRPC-Web, Connect, JSON, compressed
 * requests) and the RPCs it does not take.
 */
export function workloadApiRoutes(ports: WorkloadApiPorts): WorkloadApiHandlers {
  const core: WorkloadApiCore = { ports, cache: new StateCache(ports), shutdown: new Shutdown() };
  const header = (ctx: HandlerContext): string | null => ctx.requestHeader.get(SECURITY_HEADER);
  const stream = <K extends StateKind>(kind: K) =>
    async function* (_req: unknown, ctx: HandlerContext): AsyncGenerator<StateMessages[K]> {
      const workload = await openStream(core, kind, header(ctx), ctx.values.get(kCaller));
      yield* states(core, ctx, workload, kind);
    };
  const routes = (router: ConnectRouter): void => {
    router.service(SpiffeWorkloadAPI, {
      fetchX509SVID: stream('x509'),
      fetchX509Bundles: stream('x509Bundles'),
      fetchJWTBundles: stream('jwtBundles'),
      fetchJWTSVID: async (req, ctx) => jwtSvidResponse(await jwtSvidsFor(core, req, header(ctx), ctx.values.get(kCaller))),
      async validateJWTSVID(req, ctx) {
        requireSecurityHeader(header(ctx));
        if (req.audience === '') throw new ConnectError('audience must be specified', Code.InvalidArgument);
        if (req.svid === '') throw new ConnectError('svid must be specified', Code.InvalidArgument);
        if (!ports.ready()) throw new ConnectError('agent is not ready yet', Code.Unavailable);
        try {
          const svid = validateJwtSvid(req.svid, { audience: req.audience, bundleFor: (td) => ports.bundle(td), now: ports.now() });
          const claims = { ...svid.claims, aud: [...svid.audience] } as JsonObject;
          return create(ValidateJWTSVIDResponseSchema, { spiffeId: svid.spiffeId.toString(), claims });
        } catch (err) {
          if (err instanceof SpiffeError) throw new ConnectError(err.message, Code.InvalidArgument);
          throw err;
        }
      },
      // eslint-disable-next-line require-yield
      async *fetchWITSVID(_req, ctx) {
        requireSecurityHeader(header(ctx));
        throw new ConnectError('WIT-SVIDs are not supported', Code.Unimplemented);
      },
      // eslint-disable-next-line require-yield
      async *fetchWITBundles(_req, ctx) {
        requireSecurityHeader(header(ctx));
        throw new ConnectError('WIT-SVIDs are not supported', Code.Unimplemented);
      },
    });
  };
  return { routes, core, shutdown: () => core.shutdown.trigger(new ConnectError('the workload API is shutting down', Code.Unavailable)) };
}

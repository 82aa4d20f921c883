import { create, toBinary, type DescMessage, type JsonObject, type MessageShape } from '@bufbuild/protobuf';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { x509BundleDer, type Bundle } from '../spiffe/bundle/bundle.js';
import { validateJwtSvid } from '../spiffe/svid/jwt.js';
import { SpiffeError } from '../spiffe/errors.js';
import { SpiffeId, trustDomainId } from '../spiffe/id.js';
import {
  JWTBundlesResponseSchema, JWTSVIDResponseSchema, SpiffeWorkloadAPI, ValidateJWTSVIDResponseSchema, X509BundlesResponseSchema,
  X509SVIDResponseSchema, X509SVIDSchema,
  type JWTBundlesResponse, type X509BundlesResponse, type X509SVIDResponse,
} from './gen/workload_pb.js';
import { attestationError, callerWorkload } from './connection.js';
import type { Workload, WorkloadApiPorts, WorkloadSnapshot } from './ports.js';

const SECURITY_HEADER = 'workload.spiffe.io';

/** Workload API §5.2: the security header is mandatory; without it the client must not retry. */
function requireSecurityHeader(ctx: HandlerContext): void {
  if (ctx.requestHeader.get(SECURITY_HEADER) !== 'true') {
    throw new ConnectError('security header missing from request', Code.InvalidArgument);
  }
}

async function attest(ports: WorkloadApiPorts, ctx: HandlerContext): Promise<Workload> {
  requireSecurityHeader(ctx);
  return callerWorkload(ports, ctx);
}

/**
 * Plain JWKS of a bundle's JWT keys (FetchJWTBundles carries only JWT keys). No `use` member, as the
 * SPIRE agent sends it: JWT libraries such as jose skip keys whose `use` is not "sig".
 */
export function jwtJwks(bundle: Bundle): Uint8Array {
  return Buffer.from(JSON.stringify({ keys: bundle.jwtAuthorities.map((a) => ({ ...a.jwk, kid: a.kid })) }));
}

function x509State(ports: WorkloadApiPorts, snap: WorkloadSnapshot): X509SVIDResponse | undefined {
  if (snap.x509Svids.length === 0) return undefined;
  const federated: Record<string, Uint8Array> = {};
  for (const td of snap.federatedTrustDomains) {
    const b = ports.bundle(td);
    if (b) federated[trustDomainId(td)] = x509BundleDer(b);
  }
  return create(X509SVIDResponseSchema, {
    svids: snap.x509Svids.map((s) => {
      const own = ports.bundle(SpiffeId.parse(s.spiffeId).trustDomain);
      return create(X509SVIDSchema, {
        spiffeId: s.spiffeId,
        x509Svid: Buffer.concat(s.chain as Buffer[]),
        x509SvidKey: s.privateKey,
        bundle: own ? x509BundleDer(own) : new Uint8Array(),
        hint: s.hint ?? '',
      });
    }),
    federatedBundles: federated,
    crl: [...(ports.crls?.() ?? [])],
  });
}

function bundleMaps(ports: WorkloadApiPorts, snap: WorkloadSnapshot): { x509: X509BundlesResponse; jwt: JWTBundlesResponse } {
  const x509: Record<string, Uint8Array> = {};
  const jwt: Record<string, Uint8Array> = {};
  for (const td of [ports.trustDomain(), ...snap.federatedTrustDomains]) {
    const b = ports.bundle(td);
    if (!b) continue;
    x509[trustDomainId(td)] = x509BundleDer(b);
    jwt[trustDomainId(td)] = jwtJwks(b);
  }
  return { x509: create(X509BundlesResponseSchema, { bundles: x509, crl: [...(ports.crls?.() ?? [])] }), jwt: create(JWTBundlesResponseSchema, { bundles: jwt }) };
}

interface Encoded<T> {
  readonly message: T;
  readonly bytes: Uint8Array;
}

type StateKind = 'x509' | 'x509Bundles' | 'jwtBundles';

/**
 * A message that serializes to exactly `bytes` at the cost of a copy: every top-level field is
 * carried as an unknown field, which protobuf writes back verbatim. The RPC library serializes
 * each stream's message itself; this makes that ~1 µs instead of a full reflective encode.
 */
function preEncoded<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> {
  const message = create(schema);
  const fields: { no: number; wireType: number; data: Uint8Array }[] = [];
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    fields.push({ no, wireType, data: reader.skip(wireType, no) });
  }
  (message as { $unknown?: typeof fields }).$unknown = fields;
  return message;
}

/**
 * Encoded states per snapshot: ten thousand streams of one workload share one snapshot, so a
 * rotation is built and encoded once, not once per stream.
 */
class StateCache {
  private readonly bySnapshot = new WeakMap<WorkloadSnapshot, Map<StateKind, Encoded<unknown> | undefined>>();

  get<Desc extends DescMessage>(snap: WorkloadSnapshot, kind: StateKind, schema: Desc, build: () => MessageShape<Desc> | undefined): Encoded<MessageShape<Desc>> | undefined {
    let kinds = this.bySnapshot.get(snap);
    if (!kinds) this.bySnapshot.set(snap, (kinds = new Map()));
    if (!kinds.has(kind)) {
      const message = build();
      if (message === undefined) kinds.set(kind, undefined);
      else {
        const bytes = toBinary(schema, message);
        kinds.set(kind, { message: preEncoded(schema, bytes), bytes });
      }
    }
    return kinds.get(kind) as Encoded<MessageShape<Desc>> | undefined;
  }
}

/**
 * A stream of complete states: the first immediately, then one after every change that alters
 * it (duplicates suppressed). When the caller's last SVID goes away the stream ends with
 * PermissionDenied, as the spec asks; the server's shutdown ends it with Unavailable.
 */
/**
 * The server going away. Open streams subscribe in O(1) (an AbortSignal would do, but its listener
 * list is checked for duplicates on every add, which is quadratic across 10,000 open streams).
 */
class Shutdown {
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

async function* states<T>(ports: WorkloadApiPorts, ctx: HandlerContext, shutdown: Shutdown, current: () => Encoded<T> | undefined): AsyncGenerator<T> {
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
  try {
    for (;;) {
      if (shutdown.reason) throw shutdown.reason;
      if (ctx.signal.aborted) return; // the client went away
      if (dirty) {
        dirty = false;
        let state: Encoded<T> | undefined;
        try {
          state = current();
        } catch (err) {
          throw attestationError(err);
        }
        if (state === undefined) throw new ConnectError('no identity issued', Code.PermissionDenied);
        if (state.bytes !== last && (!last || Buffer.compare(state.bytes, last) !== 0)) {
          last = state.bytes;
          yield state.message;
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
  /** Ends every open stream, and any opened after, with Unavailable (clients retry with backoff). */
  shutdown(): void;
}

export function workloadApiRoutes(ports: WorkloadApiPorts): WorkloadApiHandlers {
  const cache = new StateCache();
  const shutdown = new Shutdown();
  const hasIdentity = (workload: Workload): void => {
    let snap: WorkloadSnapshot;
    try {
      snap = workload.snapshot();
    } catch (err) {
      throw attestationError(err);
    }
    if (snap.x509Svids.length === 0) throw new ConnectError('no identity issued', Code.PermissionDenied);
  };
  const routes = (router: ConnectRouter): void => {
    router.service(SpiffeWorkloadAPI, {
      async *fetchX509SVID(_req, ctx) {
        const workload = await attest(ports, ctx);
        yield* states(ports, ctx, shutdown, () => {
          const snap = workload.snapshot();
          return cache.get(snap, 'x509', X509SVIDResponseSchema, () => x509State(ports, snap));
        });
      },
      async *fetchX509Bundles(_req, ctx) {
        const workload = await attest(ports, ctx);
        hasIdentity(workload);
        yield* states(ports, ctx, shutdown, () => {
          const snap = workload.snapshot();
          return cache.get(snap, 'x509Bundles', X509BundlesResponseSchema, () => bundleMaps(ports, snap).x509);
        });
      },
      async *fetchJWTBundles(_req, ctx) {
        const workload = await attest(ports, ctx);
        hasIdentity(workload);
        yield* states(ports, ctx, shutdown, () => {
          const snap = workload.snapshot();
          return cache.get(snap, 'jwtBundles', JWTBundlesResponseSchema, () => bundleMaps(ports, snap).jwt);
        });
      },
      async fetchJWTSVID(req, ctx) {
        requireSecurityHeader(ctx);
        const audience = req.audience.filter((a) => a !== '');
        if (audience.length === 0) throw new ConnectError('audience must be specified', Code.InvalidArgument);
        if (req.spiffeId !== '') {
          try {
            SpiffeId.parse(req.spiffeId);
          } catch (err) {
            throw new ConnectError(`invalid requested SPIFFE ID: ${(err as Error).message}`, Code.InvalidArgument);
          }
        }
        const workload = await attest(ports, ctx);
        hasIdentity(workload);
        let svids;
        try {
          svids = await workload.jwtSvids(audience, req.spiffeId || undefined);
        } catch (err) {
          if (err instanceof ConnectError) throw err;
          throw new ConnectError('could not mint a JWT-SVID', Code.Unavailable, undefined, undefined, err);
        }
        if (svids.length === 0) throw new ConnectError('no identity issued', Code.PermissionDenied);
        return create(JWTSVIDResponseSchema, { svids: svids.map((s) => ({ spiffeId: s.spiffeId, svid: s.token, hint: s.hint ?? '' })) });
      },
      async validateJWTSVID(req, ctx) {
        requireSecurityHeader(ctx);
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
        requireSecurityHeader(ctx);
        throw new ConnectError('WIT-SVIDs are not supported', Code.Unimplemented);
      },
      // eslint-disable-next-line require-yield
      async *fetchWITBundles(_req, ctx) {
        requireSecurityHeader(ctx);
        throw new ConnectError('WIT-SVIDs are not supported', Code.Unimplemented);
      },
    });
  };
  return { routes, shutdown: () => shutdown.trigger(new ConnectError('the workload API is shutting down', Code.Unavailable)) };
}

import { create, toBinary, type JsonObject } from '@bufbuild/protobuf';
import { Code, ConnectError, createContextKey, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { x509BundleDer, type Bundle } from '../spiffe/bundle/bundle.js';
import { validateJwtSvid } from '../spiffe/svid/jwt.js';
import { SpiffeError } from '../spiffe/errors.js';
import { SpiffeId, trustDomainId } from '../spiffe/id.js';
import {
  JWTBundlesResponseSchema, JWTSVIDResponseSchema, SpiffeWorkloadAPI, ValidateJWTSVIDResponseSchema, X509BundlesResponseSchema,
  X509SVIDResponseSchema, X509SVIDSchema,
  type JWTBundlesResponse, type X509BundlesResponse, type X509SVIDResponse,
} from './gen/workload_pb.js';
import type { PeerInfo, Workload, WorkloadApiPorts } from './ports.js';

/** The caller's kernel credentials, put into each call's context by the server. */
export const kPeer = createContextKey<PeerInfo | undefined>(undefined);

const SECURITY_HEADER = 'workload.spiffe.io';

/** Workload API §5.2: the security header is mandatory; without it the client must not retry. */
function requireSecurityHeader(ctx: HandlerContext): void {
  if (ctx.requestHeader.get(SECURITY_HEADER) !== 'true') {
    throw new ConnectError('security header missing from request', Code.InvalidArgument);
  }
}

async function attest(ports: WorkloadApiPorts, ctx: HandlerContext): Promise<Workload> {
  requireSecurityHeader(ctx);
  if (!ports.ready()) throw new ConnectError('agent is not ready yet', Code.Unavailable);
  const peer = ctx.values.get(kPeer);
  if (!peer) throw new ConnectError('caller could not be identified', Code.PermissionDenied);
  try {
    return await ports.attest(peer);
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    throw new ConnectError('workload attestation failed', Code.Unavailable, undefined, undefined, err);
  }
}

/**
 * Plain JWKS of a bundle's JWT keys (FetchJWTBundles carries only JWT keys). No `use` member, as the
 * SPIRE agent sends it: JWT libraries such as jose skip keys whose `use` is not "sig".
 */
export function jwtJwks(bundle: Bundle): Uint8Array {
  return Buffer.from(JSON.stringify({ keys: bundle.jwtAuthorities.map((a) => ({ ...a.jwk, kid: a.kid })) }));
}

function x509State(ports: WorkloadApiPorts, workload: Workload): X509SVIDResponse | undefined {
  const svids = workload.x509Svids();
  if (svids.length === 0) return undefined;
  const federated: Record<string, Uint8Array> = {};
  for (const td of workload.federatedTrustDomains()) {
    const b = ports.bundle(td);
    if (b) federated[trustDomainId(td)] = x509BundleDer(b);
  }
  return create(X509SVIDResponseSchema, {
    svids: svids.map((s) => {
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
  });
}

function bundleMaps(ports: WorkloadApiPorts, workload: Workload): { x509: X509BundlesResponse; jwt: JWTBundlesResponse } {
  const x509: Record<string, Uint8Array> = {};
  const jwt: Record<string, Uint8Array> = {};
  for (const td of [ports.trustDomain(), ...workload.federatedTrustDomains()]) {
    const b = ports.bundle(td);
    if (!b) continue;
    x509[trustDomainId(td)] = x509BundleDer(b);
    jwt[trustDomainId(td)] = jwtJwks(b);
  }
  return { x509: create(X509BundlesResponseSchema, { bundles: x509 }), jwt: create(JWTBundlesResponseSchema, { bundles: jwt }) };
}

/**
 * A stream of complete states: the first immediately, then one after every change that alters
 * it (duplicates suppressed). When the caller's last SVID goes away the stream ends with
 * PermissionDenied, as the spec asks; the server's shutdown ends it with Unavailable.
 */
async function* states<T>(ports: WorkloadApiPorts, ctx: HandlerContext, current: () => T | undefined, encode: (t: T) => Uint8Array): AsyncGenerator<T> {
  let wake: (() => void) | undefined;
  let dirty = true;
  const unsubscribe = ports.onChange(() => {
    dirty = true;
    wake?.();
  });
  const onAbort = (): void => wake?.();
  ctx.signal.addEventListener('abort', onAbort);
  let last: Uint8Array | undefined;
  try {
    for (;;) {
      if (ctx.signal.aborted) {
        // The server's shutdown carries the status to end with; a client going away does not.
        if (ctx.signal.reason instanceof ConnectError) throw ctx.signal.reason;
        return;
      }
      if (dirty) {
        dirty = false;
        const state = current();
        if (state === undefined) throw new ConnectError('no identity issued', Code.PermissionDenied);
        const bytes = encode(state);
        if (!last || Buffer.compare(Buffer.from(bytes), Buffer.from(last)) !== 0) {
          last = bytes;
          yield state;
        }
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        if (dirty || ctx.signal.aborted) resolve();
      });
      wake = undefined;
    }
  } finally {
    unsubscribe();
    ctx.signal.removeEventListener('abort', onAbort);
  }
}

export function workloadApiRoutes(ports: WorkloadApiPorts) {
  return (router: ConnectRouter): void => {
    router.service(SpiffeWorkloadAPI, {
      async *fetchX509SVID(_req, ctx) {
        const workload = await attest(ports, ctx);
        yield* states(ports, ctx, () => x509State(ports, workload), (s) => toBinary(X509SVIDResponseSchema, s));
      },
      async *fetchX509Bundles(_req, ctx) {
        const workload = await attest(ports, ctx);
        if (workload.x509Svids().length === 0) throw new ConnectError('no identity issued', Code.PermissionDenied);
        yield* states(ports, ctx, () => bundleMaps(ports, workload).x509, (s) => toBinary(X509BundlesResponseSchema, s));
      },
      async *fetchJWTBundles(_req, ctx) {
        const workload = await attest(ports, ctx);
        if (workload.x509Svids().length === 0) throw new ConnectError('no identity issued', Code.PermissionDenied);
        yield* states(ports, ctx, () => bundleMaps(ports, workload).jwt, (s) => toBinary(JWTBundlesResponseSchema, s));
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
        if (workload.x509Svids().length === 0) throw new ConnectError('no identity issued', Code.PermissionDenied);
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
}

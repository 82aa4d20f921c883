import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { systemRandom, type Random } from '../../lib/random.js';
import { attestationError, callerWorkload } from '../connection.js';
import { DiscoveryResponseSchema, type DeltaDiscoveryRequest, type DiscoveryRequest } from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import { SecretDiscoveryService } from '../gen/envoy/service/secret/v3/sds_pb.js';
import type { Workload, WorkloadApiPorts } from '../ports.js';
import { DeltaStream } from './delta.js';
import { Inbox } from './inbox.js';
import { CatalogCache, DEFAULT_SDS_NAMES, SECRET_TYPE_URL, type SdsNames, type SecretCatalog } from './secrets.js';
import { checkNameCount, checkTypeUrl, resolveNames, SotwStream, uniqueNames } from './sotw.js';

/** A client rejected what it was sent (xDS NACK): worth a warning, since its sidecar keeps the old secret. */
export interface SdsNack {
  readonly rpc: 'StreamSecrets' | 'DeltaSecrets';
  /** The Envoy node id, as the client sent it on the stream's first request. */
  readonly node: string;
  readonly resourceNames: readonly string[];
  /** The version the client still runs (the one before the rejected response). */
  readonly versionInfo: string;
  readonly nonce: string;
  readonly message: string;
}

export interface SdsOptions {
  readonly names?: SdsNames;
  readonly random?: Random;
  /** Told about each NACK (the agent logs it). */
  readonly onNack?: (nack: SdsNack) => void;
}

export interface SdsHandlers {
  readonly routes: (router: ConnectRouter) => void;
  /** Ends every open stream, and any opened after, with Unavailable (Envoy reconnects with backoff). */
  shutdown(): void;
}

const clip = (s: string, n = 300): string => (s.length > n ? `${s.slice(0, n)}…` : s);

/**
 * Envoy's Secret Discovery Service (v3) beside the Workload API on the agent's socket, as SPIRE's
 * agent serves it. Callers are identified exactly as Workload API callers are (the connection's
 * kernel-attested caller); the `workload.spiffe.io` header is not asked for, since Envoy does not
 * send it. A caller without an identity gets PermissionDenied, as on the Workload API.
 */
export function sdsRoutes(ports: WorkloadApiPorts, options: SdsOptions = {}): SdsHandlers {
  const cache = new CatalogCache(ports, options.names ?? DEFAULT_SDS_NAMES);
  const random = options.random ?? systemRandom;
  const nonce = (): string => random.bytes(8).toString('hex');
  let shutdownReason: ConnectError | undefined;
  const shutdownListeners = new Set<() => void>();

  const catalogOf = (workload: Workload) => (): SecretCatalog => {
    let catalog: SecretCatalog;
    try {
      catalog = cache.get(workload.snapshot());
    } catch (err) {
      throw attestationError(err);
    }
    if (!catalog.hasIdentity) throw new ConnectError('no identity issued', Code.PermissionDenied);
    return catalog;
  };

  /**
   * Runs one bidirectional stream: answers each request through `onRequest`, and each cache change
   * through `onChange`, until the client goes away, the server shuts down, or a handler throws.
   */
  async function* serve<Req, Res>(ctx: HandlerContext, requests: AsyncIterable<Req>, onRequest: (req: Req) => Res | undefined, onChange: () => Res | undefined): AsyncGenerator<Res> {
    const inbox = new Inbox(requests);
    let dirty = false;
    const unsubscribe = ports.onChange(() => {
      dirty = true;
      inbox.notify();
    });
    const wake = (): void => inbox.notify();
    shutdownListeners.add(wake);
    ctx.signal.addEventListener('abort', wake);
    try {
      for (;;) {
        if (shutdownReason) throw shutdownReason;
        if (ctx.signal.aborted) return;
        const req = inbox.shift();
        if (req !== undefined) {
          const res = onRequest(req);
          if (res !== undefined) yield res;
          continue;
        }
        if (inbox.ended) {
          if (inbox.error !== undefined && !ctx.signal.aborted) throw inbox.error;
          return; // the client closed its side: so do we
        }
        if (dirty) {
          dirty = false;
          const res = onChange();
          if (res !== undefined) yield res;
          continue;
        }
        await inbox.wait();
      }
    } finally {
      inbox.close();
      unsubscribe();
      shutdownListeners.delete(wake);
      ctx.signal.removeEventListener('abort', wake);
    }
  }

  const reportNack = (rpc: SdsNack['rpc'], node: string, names: readonly string[], versionInfo: string, req: { responseNonce: string; errorDetail?: { message: string } | undefined }): void => {
    if (!req.errorDetail) return;
    options.onNack?.({ rpc, node: clip(node), resourceNames: names.slice(0, 20).map((n) => clip(n)), versionInfo: clip(versionInfo), nonce: clip(req.responseNonce, 64), message: clip(req.errorDetail.message, 1000) });
  };

  const routes = (router: ConnectRouter): void => {
    router.service(SecretDiscoveryService, {
      async *streamSecrets(requests, ctx) {
        const workload = await callerWorkload(ports, ctx);
        const catalog = catalogOf(workload);
        catalog(); // refuse a caller without identity before it sends anything
        const stream = new SotwStream(nonce);
        let node = '';
        yield* serve(ctx, requests, (req: DiscoveryRequest) => {
          node ||= req.node?.id ?? '';
          if (stream.firstNack(req)) reportNack('StreamSecrets', node, req.resourceNames, req.versionInfo, req);
          return stream.request(req, catalog).response;
        }, () => stream.changed(catalog));
      },
      async *deltaSecrets(requests, ctx) {
        const workload = await callerWorkload(ports, ctx);
        const catalog = catalogOf(workload);
        catalog();
        const stream = new DeltaStream(nonce);
        let node = '';
        yield* serve(ctx, requests, (req: DeltaDiscoveryRequest) => {
          node ||= req.node?.id ?? '';
          if (stream.firstNack(req)) reportNack('DeltaSecrets', node, req.resourceNamesSubscribe, '', req);
          return stream.request(req, catalog);
        }, () => stream.changed(catalog));
      },
      async fetchSecrets(req, ctx) {
        checkTypeUrl(req.typeUrl);
        checkNameCount(req.resourceNames.length);
        const workload = await callerWorkload(ports, ctx);
        const secrets = resolveNames(catalogOf(workload)(), uniqueNames(req.resourceNames));
        // as SPIRE's agent: a one-shot answer has neither version nor nonce
        return create(DiscoveryResponseSchema, { resources: secrets.map((s) => s.any), typeUrl: SECRET_TYPE_URL });
      },
    });
  };

  return {
    routes,
    shutdown() {
      shutdownReason ??= new ConnectError('the agent is shutting down', Code.Unavailable);
      for (const l of [...shutdownListeners]) l();
    },
  };
}

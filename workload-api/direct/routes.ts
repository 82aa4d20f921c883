import { fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import {
  JWTBundlesRequestSchema, JWTSVIDRequestSchema, JWTSVIDResponseSchema, X509BundlesRequestSchema, X509SVIDRequestSchema,
} from '../gen/workload_pb.js';
import type { WorkloadApiMetrics } from '../metrics.js';
import type { ConnectionAttestation, JwtSvidResult } from '../ports.js';
import { jwtSvidResponse, jwtSvidsFor, openStream, SECURITY_HEADER, type WorkloadApiCore } from '../service.js';
import { grpcFrame, type StateKind } from '../states.js';
import { DirectCall } from './call.js';
import { StateStreams } from './streams.js';
import { isPlainGrpc, parseTimeout, singleMessage } from './wire.js';

/**
 * The Workload API's hot RPCs served on node:http2 directly, without connect-node's per-call
 * pipeline (async iterables, interceptors, per-stream serialization and compression): a stream
 * costs one small object, a rotation one write of a frame encoded once for everyone. The rules
 * (security header, attestation, statuses) are the same functions connect-node's handlers call.
 */

const STREAMS: Readonly<Record<string, { readonly method: string; readonly kind: StateKind; readonly request: DescMessage }>> = {
  '/SpiffeWorkloadAPI/FetchX509SVID': { method: 'FetchX509SVID', kind: 'x509', request: X509SVIDRequestSchema },
  '/SpiffeWorkloadAPI/FetchX509Bundles': { method: 'FetchX509Bundles', kind: 'x509Bundles', request: X509BundlesRequestSchema },
  '/SpiffeWorkloadAPI/FetchJWTBundles': { method: 'FetchJWTBundles', kind: 'jwtBundles', request: JWTBundlesRequestSchema },
};
const JWT_SVID_PATH = '/SpiffeWorkloadAPI/FetchJWTSVID';

export interface DirectWorkloadApi {
  /** Serves `stream` when it is one of the direct RPCs in plain gRPC; false: hand it to connect-node. */
  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, caller: ConnectionAttestation | undefined): boolean;
}

const headerValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(', ') : v);

/** The request message, parsed as connect-node parses it (a parse failure is its Internal "parse binary"). */
function parse<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): ReturnType<typeof fromBinary<Desc>> | ConnectError {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    return new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
  }
}

export function directWorkloadApi(core: WorkloadApiCore, metrics: WorkloadApiMetrics | undefined): DirectWorkloadApi {
  const streams = new StateStreams(core);
  // an answer the agent hands out again (the same array while it holds) is framed once
  const jwtFrames = new WeakMap<readonly JwtSvidResult[], Buffer>();
  const jwtFrame = (svids: readonly JwtSvidResult[]): Buffer => {
    let frame = jwtFrames.get(svids);
    if (!frame) jwtFrames.set(svids, (frame = grpcFrame(toBinary(JWTSVIDResponseSchema, jwtSvidResponse(svids)))));
    return frame;
  };
  return {
    handle(stream, headers, caller) {
      const path = headers[':path'];
      const spec = path === undefined ? undefined : STREAMS[path];
      if ((!spec && path !== JWT_SVID_PATH) || !isPlainGrpc(headers)) return false;
      const timeout = parseTimeout(headers['grpc-timeout']);
      const call = new DirectCall(stream, typeof timeout === 'number' ? timeout : undefined);
      const header = headerValue(headers[SECURITY_HEADER]);
      if (spec) {
        // a stream is counted from its start, as connect-node's interceptor counts it, body faults included
        call.observer = metrics?.callStarted(spec.method, true);
        call.readBody((body) => {
          const message = timeout instanceof ConnectError ? timeout : singleMessage(body, 'server-streaming');
          const request = message instanceof ConnectError ? message : parse(spec.request, message);
          if (request instanceof ConnectError) return call.fail(request);
          openStream(core, spec.kind, header, caller).then(
            (workload) => streams.add(call, workload, spec.kind),
            (err: unknown) => call.fail(err),
          );
        });
        return true;
      }
      call.readBody((body) => {
        const message = timeout instanceof ConnectError ? timeout : singleMessage(body, 'unary');
        const request = message instanceof ConnectError ? message : parse(JWTSVIDRequestSchema, message);
        // a unary call whose request cannot be read is not counted (connect-node reads it before its interceptors)
        if (request instanceof ConnectError) return call.fail(request);
        call.observer = metrics?.callStarted('FetchJWTSVID', false);
        jwtSvidsFor(core, request, header, caller).then(
          (svids) => call.reply(jwtFrame(svids)),
          (err: unknown) => call.fail(err),
        );
      });
      return true;
    },
  };
}

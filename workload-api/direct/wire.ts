import { Code, ConnectError } from '@connectrpc/connect';
import type { IncomingHttpHeaders } from 'node:http2';

/**
 * gRPC over HTTP/2, the little of it the direct path needs: which requests it may take, the
 * request body's length-prefixed messages, deadlines and status trailers. Errors carry the codes
 * and messages connect-node gives for the same faults, so a client cannot tell the two paths apart.
 */

/**
 * The largest request message taken (gRPC's customary default receive limit). The RPCs here take an
 * empty message or a JWT audience list; anything near this is an attack, refused before it is parsed.
 */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;

export const RESPONSE_HEADERS = Object.freeze({ ':status': 200, 'content-type': 'application/grpc+proto' });
export const OK_TRAILERS = Object.freeze({ 'grpc-status': '0' });

/**
 * Whether a request is plain gRPC with protobuf and no compression: everything else (Connect,
 * gRPC-Web, JSON, compressed bodies, other methods) goes to connect-node, which serves it as before.
 */
export function isPlainGrpc(headers: IncomingHttpHeaders): boolean {
  if (headers[':method'] !== 'POST') return false;
  const type = headers['content-type'];
  if (type !== 'application/grpc' && type !== 'application/grpc+proto') return false;
  const encoding = headers['grpc-encoding'];
  return encoding === undefined;
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** The grpc-timeout header in ms (undefined when absent), or the error connect-node answers a malformed one with. */
export function parseTimeout(value: string | string[] | undefined): number | undefined | ConnectError {
  if (value === undefined) return undefined;
  const m = typeof value === 'string' ? /^(\d{1,8})([HMSmun])$/.exec(value) : null;
  if (!m) return new ConnectError(`protocol error: invalid grpc timeout value: ${String(value)}`, Code.InvalidArgument);
  return TIMEOUT_UNITS[m[2]!]! * Number.parseInt(m[1]!, 10);
}

/**
 * The request's one message, from its body's bytes. Each fault is refused with connect-node's code
 * and words: a partial envelope, a compressed flag without grpc-encoding, none or more than one
 * message (the RPCs here all take exactly one).
 */
export function singleMessage(body: Buffer, methodKind: 'unary' | 'server-streaming'): Uint8Array | ConnectError {
  const messages: Uint8Array[] = [];
  let at = 0;
  while (at < body.length) {
    if (body.length - at < 5) return new ConnectError('protocol error: incomplete envelope', Code.InvalidArgument);
    const flags = body[at]!;
    const length = body.readUInt32BE(at + 1);
    if (length > MAX_REQUEST_BYTES) return tooLarge();
    if (body.length - at - 5 < length) return new ConnectError('protocol error: incomplete envelope', Code.InvalidArgument);
    if ((flags & 1) === 1) return new ConnectError('received compressed envelope, but do not know how to decompress', Code.Internal);
    messages.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  if (messages.length === 0) return new ConnectError(`protocol error: missing input message for ${methodKind} method`, Code.Unimplemented);
  if (messages.length > 1) return new ConnectError(`protocol error: received extra input message for ${methodKind} method`, Code.Unimplemented);
  return messages[0]!;
}

export const tooLarge = (): ConnectError => new ConnectError(`message size is larger than configured readMaxBytes ${MAX_REQUEST_BYTES}`, Code.ResourceExhausted);

/** Trailers ending a call with `err` (a ConnectError as the handlers throw, or anything else: Internal). */
export function errorTrailers(err: unknown): Record<string, string> {
  const e = err instanceof ConnectError ? err : new ConnectError('internal error', Code.Internal, undefined, undefined, err);
  return { 'grpc-message': encodeURIComponent(e.rawMessage), 'grpc-status': String(e.code) };
}

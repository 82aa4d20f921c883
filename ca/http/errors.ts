import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { CairnError, type ErrorCode } from '../../lib/errors.js';
import { statusOf } from '../../lib/status.js';
import { SpiffeError } from '../../spiffe/errors.js';

export interface HttpError {
  readonly status: number;
  readonly body: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

/** Fastify's own request errors (body parsing, limits, schema validation) in our catalogue. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'malformed_json',
  FST_ERR_VALIDATION: 'invalid_request',
};

function fromSpiffe(err: SpiffeError): ErrorCode {
  switch (err.code) {
    case 'invalid_spiffe_id':
      return 'invalid_spiffe_id';
    case 'invalid_trust_domain':
      return 'invalid_trust_domain';
    default:
      return 'invalid_request';
  }
}

/** One mapping from anything thrown to the status and `{code, message}` a client sees. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof CairnError) {
    const body: HttpError['body'] = { code: err.code, message: err.message };
    if (err.details) body.details = { ...err.details };
    return { status: statusOf(err.code).http, body };
  }
  if (err instanceof SpiffeError) {
    const code = fromSpiffe(err);
    return { status: statusOf(code).http, body: { code, message: err.message } };
  }
  const fe = err as Partial<FastifyError> & { validation?: unknown; status?: number; type?: string };
  if (fe.validation) return { status: 400, body: { code: 'invalid_request', message: fe.message ?? 'request is invalid' } };
  const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return { status: statusOf(mapped).http, body: { code: mapped, message: fe.message ?? mapped } };
  // JSON.parse failures surface as SyntaxError with a 400 status from the body parser.
  if (err instanceof SyntaxError && (fe.statusCode === 400 || fe.status === 400)) {
    return { status: 400, body: { code: 'malformed_json', message: 'request body is not valid JSON' } };
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { status: fe.statusCode, body: { code: 'invalid_request', message: fe.message ?? 'request is invalid' } };
  }
  return { status: 500, body: { code: 'internal', message: 'internal error' } };
}

/**
 * Seconds a client should wait before retrying, for the refusals that are about *when*, not *what*:
 * a missing database or expired authority (a client's short backoff is right) and a rate limit.
 */
function retryAfterOf(err: unknown, status: number): number | undefined {
  const hinted = err instanceof CairnError ? err.details?.retryAfterSeconds : undefined;
  if (typeof hinted === 'number') return Math.max(1, Math.ceil(hinted));
  return status === 503 ? 1 : undefined;
}

/**
 * 4xx answers worth an operator's attention: a caller presenting a wrong, spent or revoked credential,
 * or one being throttled. The rest (bad input, unknown names, conflicts) is the caller's own mistake,
 * fully explained in the answer it got: a debug line.
 */
const SIGNAL_4XX = new Set([401, 403, 429]);

export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toHttpError(err);
  // A 503 is a known condition (the database is away, we are shutting down): one warning line per
  // request, not an error with a stack, or an outage buries the log under identical traces.
  if (status === 503) request.log.warn({ code: body.code, cause: err instanceof Error && err.cause instanceof Error ? err.cause.message : undefined }, 'request refused: dependency unavailable');
  else if (status >= 500) request.log.error({ err, code: body.code }, 'request failed');
  else if (SIGNAL_4XX.has(status)) request.log.warn({ code: body.code, status, method: request.method, url: request.url.split('?')[0], remoteAddress: request.ip }, 'request refused');
  else request.log.debug({ code: body.code, status }, 'request rejected');
  request.errorCode = body.code;
  const retryAfter = retryAfterOf(err, status);
  if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
  void reply.status(status).send(body);
}

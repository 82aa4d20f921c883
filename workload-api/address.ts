import { Code, ConnectError } from '@connectrpc/connect';

/**
 * Workload API addresses and errors, apart from the client so that light callers (the health check a
 * probe runs every few seconds) load no SVID parsing.
 */

/** A failed Workload API call; `code` is the gRPC status in snake case (e.g. `permission_denied`). */
export class WorkloadApiError extends Error {
  override readonly name = 'WorkloadApiError';
  constructor(
    readonly code: string,
    message: string,
    /** Whether the spec tells clients to retry (Unavailable, PermissionDenied) rather than report. */
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

function snake(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

/** Socket errors meaning "no server there right now": gRPC calls that Unavailable, and so do we. */
const UNREACHABLE = new Set(['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_STREAM_CANCEL']);

export function toWorkloadApiError(err: unknown): WorkloadApiError {
  if (err instanceof WorkloadApiError) return err;
  const e = ConnectError.from(err);
  const syscall = (e.cause as { code?: string } | undefined)?.code ?? (err as { code?: unknown }).code;
  if (typeof syscall === 'string' && UNREACHABLE.has(syscall)) return new WorkloadApiError('unavailable', `the workload API is not reachable: ${e.rawMessage}`, true);
  return new WorkloadApiError(snake(e.code), e.rawMessage, e.code === Code.Unavailable || e.code === Code.PermissionDenied);
}

/**
 * The socket path from a Workload API address: `unix:///abs/path` (or `unix:/abs/path`, as go-spiffe
 * accepts). TCP addresses are refused: Cairn serves only Unix sockets, where the kernel names the caller.
 */
export function socketPathOf(address: string): string {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new WorkloadApiError('invalid_argument', `workload API address "${address}" is not a URI (want unix:///path/to/socket)`, false);
  }
  if (url.protocol !== 'unix:') throw new WorkloadApiError('invalid_argument', `workload API address "${address}" must use the unix scheme`, false);
  if (url.host !== '' || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new WorkloadApiError('invalid_argument', `workload API address "${address}" must be unix:///absolute/path with nothing else`, false);
  }
  const path = decodeURIComponent(url.pathname);
  if (!path.startsWith('/') || path === '/') throw new WorkloadApiError('invalid_argument', `workload API address "${address}" has no absolute socket path`, false);
  return path;
}


import { accessSync, constants, statSync } from 'node:fs';
import { dirname } from 'node:path';
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

/** What connect(2)'s errno means to someone pointing a client at a socket. */
const CONNECT_ERRNO_MEANING: Readonly<Record<string, string>> = {
  ENOENT: 'no such socket',
  ECONNREFUSED: 'nothing is listening on it',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a part of the path is not a directory',
  ENOTSOCK: 'not a socket',
  EAGAIN: "the agent's connection backlog is full",
};

const modeOf = (path: string): string => {
  try {
    const st = statSync(path);
    return ` (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${st.uid})`;
  } catch {
    return '';
  }
};

/**
 * Which path refused this process: the first directory on the way it may not search, else the socket
 * it may not write to. connect(2) answers EACCES for either and names neither.
 */
function refusingPath(socketPath: string): string {
  const dirs: string[] = [];
  for (let d = dirname(socketPath); ; d = dirname(d)) {
    dirs.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of dirs) {
    try {
      accessSync(d, constants.X_OK);
    } catch {
      return `the directory ${d}${modeOf(d)}`;
    }
  }
  return `the socket ${socketPath}${modeOf(socketPath)}`;
}

export function toWorkloadApiError(err: unknown, socketPath?: string): WorkloadApiError {
  if (err instanceof WorkloadApiError) return err;
  const e = ConnectError.from(err);
  const cause = e.cause as { code?: string; syscall?: string } | undefined;
  const syscall = cause?.code ?? (err as { code?: unknown }).code;
  // The connection itself failed: say where we tried and why, in words, with the errno.
  if (socketPath !== undefined && cause?.syscall === 'connect' && typeof syscall === 'string') {
    const where = `cannot connect to the Workload API at unix://${socketPath}`;
    const meaning = CONNECT_ERRNO_MEANING[syscall] ?? 'connect(2) failed';
    if (syscall === 'EACCES' || syscall === 'EPERM') {
      // A permission problem does not go away by waiting: report it rather than retry.
      return new WorkloadApiError('unavailable', `${where}: ${meaning} (${syscall}) on ${refusingPath(socketPath)}`, false);
    }
    return new WorkloadApiError('unavailable', `${where}: ${meaning} (${syscall})`, true);
  }
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


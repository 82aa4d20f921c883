import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { loadNativeAddon } from '../../lib/native-addon.js';
import { packageRoot } from '../../lib/paths.js';

/** What the kernel says about the process on the other end of a Unix socket, read at accept. */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /** A pidfd pinning the peer process (Linux >= 6.5), or -1. Close with releasePeer(). */
  readonly pidfd: number;
  /** /proc/<pid>/stat start time, the fallback guard against pid reuse where there is no pidfd. */
  readonly startTime: string | undefined;
}

interface Addon {
  peerCredentials(fd: number): { pid: number; uid: number; gid: number; pidfd: number };
  pidfdAlive(pidfd: number): boolean;
  closeFd(fd: number): void;
  execve(path: string, argv: readonly string[], env: readonly string[]): never;
}

/** The one seam to the native addon (built by `npm install`, see scripts/build-addon.sh). */
export interface PeerCredentialSource {
  /** The kernel's credentials (getsockopt only: nothing read from /proc, so refusing a connection stays cheap). */
  kernelCredentials(socket: Socket): PeerCredentials;
  /** Adds the start time (reads /proc/<pid>/stat), the pid-reuse guard where there is no pidfd. */
  pin(peer: PeerCredentials): PeerCredentials;
  /** kernelCredentials, pinned. */
  fromSocket(socket: Socket): PeerCredentials;
  /** True while the process the credentials were read from is still the one at that pid. */
  stillSame(peer: PeerCredentials): boolean;
  release(peer: PeerCredentials): void;
}

export function loadPeerCredentialSource(root: string = packageRoot(import.meta.url)): PeerCredentialSource {
  const addon = loadNativeAddon<Addon>('cairn_peercred', root);
  const kernelCredentials = (socket: Socket): PeerCredentials => {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) throw new Error('the socket has no file descriptor (not a Unix socket?)');
    return { ...addon.peerCredentials(fd), startTime: undefined };
  };
  const pin = (peer: PeerCredentials): PeerCredentials =>
    peer.startTime !== undefined || peer.pid <= 0 ? peer : { ...peer, startTime: processStartTime(peer.pid) };
  return {
    kernelCredentials,
    pin,
    fromSocket: (socket) => pin(kernelCredentials(socket)),
    stillSame(peer) {
      if (peer.pidfd >= 0) return addon.pidfdAlive(peer.pidfd);
      return peer.startTime !== undefined && processStartTime(peer.pid) === peer.startTime;
    },
    release(peer) {
      if (peer.pidfd >= 0) addon.closeFd(peer.pidfd);
    },
  };
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); undefined once the process is gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** `--max-semi-space-size` and `--max_semi_space_size` are one V8 flag. */
const flagName = (arg: string): string => arg.split('=')[0]!.replace(/_/g, '-');

/**
 * Restarts this process in place (execve: same pid, same stdio, under the same supervisor) with V8
 * flags added to node's command line, unless the command line or NODE_OPTIONS already names each
 * of them: the user's choice stands, and the restarted process does not restart again. V8 sizes its
 * heap when the process starts; `v8.setFlagsFromString` accepts heap-size flags later and changes
 * nothing. Call it before the process writes to stdout or stderr or opens anything. Returns only
 * when it did not restart: undefined when there was nothing to add, else why it could not (the
 * process then carries on with what it has).
 */
export function reexecWithNodeFlags(flags: readonly string[], root: string = packageRoot(import.meta.url)): string | undefined {
  const given = new Set([...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].filter(Boolean).map(flagName));
  const missing = flags.filter((f) => !given.has(flagName(f)));
  if (missing.length === 0) return undefined;
  let addon: Addon;
  try {
    addon = loadNativeAddon<Addon>('cairn_peercred', root);
  } catch (err) {
    return `the native addon is not built: ${(err as Error).message}`;
  }
  const env = Object.entries(process.env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
  try {
    addon.execve(process.execPath, [process.argv0, ...missing, ...process.execArgv, ...process.argv.slice(1)], env);
  } catch (err) {
    return (err as Error).message;
  }
}

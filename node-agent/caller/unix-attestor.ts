import { createHash } from 'node:crypto';
import { closeSync, createReadStream, fstatSync, openSync, readFileSync, readlinkSync, statSync, type BigIntStats } from 'node:fs';
import type { PeerInfo } from '../../workload-api/ports.js';
import { AccountNames } from './accounts.js';

/**
 * The Unix workload attestor: selectors from what the kernel says about the caller. uid/gid come
 * from SO_PEERCRED; names from /etc/passwd and /etc/group; supplementary groups, the executable's
 * path and its SHA-256 from /proc/<pid> (path and hash need the agent to run as root or with
 * CAP_SYS_PTRACE when the caller is another user; without it they are left out, never guessed).
 *
 * Everything that comes from /proc is read once, when the connection is accepted (processFacts);
 * each call then only checks that the process is still running the same executable (exeIdentity).
 */

/** The executable a process runs, as /proc/<pid>/exe names it: path (readlink) and file identity (stat). */
export interface ExeIdentity {
  readonly path: string;
  readonly dev: bigint;
  readonly ino: bigint;
  /** Device, inode, size, mtime and ctime: what a cached hash is keyed by. */
  readonly key: string;
}

/** What /proc said about a caller when its connection was accepted. */
export interface ProcessFacts {
  readonly groups: readonly number[];
  /** Undefined when /proc/<pid>/exe could not be read (another user's process without CAP_SYS_PTRACE, or gone). */
  readonly exe: ExeIdentity | undefined;
  /** The executable's SHA-256, computed from the file identified at accept (shared per file identity). */
  readonly sha256: Promise<string> | undefined;
  /** The text of /proc/<pid>/cgroup, or undefined. */
  readonly cgroup: string | undefined;
}

export function exeIdentity(procRoot: string, pid: number): ExeIdentity | undefined {
  try {
    const st = statSync(`${procRoot}/${pid}/exe`, { bigint: true });
    return { path: readlinkSync(`${procRoot}/${pid}/exe`), dev: st.dev, ino: st.ino, key: fileKey(st) };
  } catch {
    return undefined;
  }
}

/**
 * Whether the process at `pid` still runs the executable `exe` names (same path, device and inode):
 * exeIdentity compared field by field, without the file key only a hash needs (a check on every call).
 */
export function stillRunsExe(procRoot: string, pid: number, exe: ExeIdentity | undefined): boolean {
  if (exe === undefined) return exeIdentity(procRoot, pid) === undefined;
  const link = `${procRoot}/${pid}/exe`;
  try {
    const st = statSync(link, { bigint: true });
    return st.dev === exe.dev && st.ino === exe.ino && readlinkSync(link) === exe.path;
  } catch {
    return false;
  }
}

function supplementaryGroups(procRoot: string, pid: number): number[] {
  try {
    const status = readFileSync(`${procRoot}/${pid}/status`, 'utf8');
    const line = status.split('\n').find((l) => l.startsWith('Groups:'));
    return line ? line.slice(7).trim().split(/\s+/).filter(Boolean).map(Number) : [];
  } catch {
    return [];
  }
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

const fileKey = (st: BigIntStats): string => `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;

/**
 * Executable hashes by file identity (device, inode, size, mtime, ctime). Hashing a 100 MB binary
 * on every call would cost ~200 ms of each Workload API call; replacing the file changes its
 * identity, so a cached hash never outlives the bytes it was computed from.
 */
export class ExecutableHashCache {
  private readonly hashes = new Map<string, Promise<string>>();
  constructor(private readonly capacity = 1024) {}

  /**
   * The hash of the file open at `fd` (which this takes over and closes). Only an unknown file is
   * read; a file being hashed for another caller shares that work.
   */
  hashOpen(fd: number): Promise<string> {
    let key: string;
    try {
      key = fileKey(fstatSync(fd, { bigint: true }));
    } catch (err) {
      closeSync(fd);
      return Promise.reject(err as Error);
    }
    let h = this.hashes.get(key);
    if (h) {
      closeSync(fd);
      return h;
    }
    h = new Promise<string>((resolve, reject) => {
      const hash = createHash('sha256');
      createReadStream('', { fd, autoClose: true }).on('error', reject).on('data', (c) => hash.update(c)).on('end', () => resolve(hash.digest('hex')));
    });
    h.catch(() => this.hashes.delete(key));
    if (this.hashes.size >= this.capacity) this.hashes.delete(this.hashes.keys().next().value!);
    this.hashes.set(key, h);
    return h;
  }

  /** The hash of a file already hashed (or being hashed), by its identity key; undefined when unknown. */
  cached(key: string): Promise<string> | undefined {
    return this.hashes.get(key);
  }

  /** The hash of the file at `path` (e.g. /proc/<pid>/exe). */
  hash(path: string): Promise<string> {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.hashOpen(fd);
  }
}

export interface ProcessFactsOptions {
  readonly procRoot?: string;
  /** Read the executable's path and hash it (a file read per executable not seen before). */
  readonly withPathAndHash?: boolean;
}

/**
 * Reads, synchronously and at once, what /proc says about `pid`. An executable whose hash is not
 * known yet (by file identity) is opened here and its identity compared with what stat just said, so
 * the hash is of the binary the process ran when its connection was accepted, whatever it runs by the
 * time the hash is done.
 */
export function processFacts(pid: number, hashes: ExecutableHashCache, options: ProcessFactsOptions = {}): ProcessFacts {
  const procRoot = options.procRoot ?? '/proc';
  const groups = supplementaryGroups(procRoot, pid);
  const cgroup = readOrUndefined(`${procRoot}/${pid}/cgroup`);
  if (options.withPathAndHash === false) return { groups, exe: undefined, sha256: undefined, cgroup };
  const exe = exeIdentity(procRoot, pid);
  let sha256: Promise<string> | undefined;
  if (exe) sha256 = hashes.cached(exe.key);
  if (exe && !sha256) {
    try {
      const fd = openSync(`${procRoot}/${pid}/exe`, 'r');
      const st = fstatSync(fd, { bigint: true });
      if (st.dev === exe.dev && st.ino === exe.ino) sha256 = hashes.hashOpen(fd);
      else closeSync(fd); // it exec'd between two reads: no hash rather than the wrong one
    } catch {
      // not permitted to open (only to stat), or the process is gone
    }
    sha256?.catch(() => undefined); // awaited by the caller; never an unhandled rejection
  }
  return { groups, exe, sha256, cgroup };
}

/** unix:* selectors from the kernel's credentials and the facts read at accept. */
export async function unixSelectors(peer: PeerInfo, facts: ProcessFacts, accounts: AccountNames): Promise<string[]> {
  const names = accounts.snapshot();
  const selectors = [`unix:uid:${peer.uid}`, `unix:gid:${peer.gid}`];
  const user = names.user(peer.uid);
  if (user) selectors.push(`unix:user:${user}`);
  const groupName = names.group(peer.gid);
  if (groupName) selectors.push(`unix:group:${groupName}`);
  for (const g of facts.groups) {
    selectors.push(`unix:supplementary_gid:${g}`);
    const name = names.group(g);
    if (name) selectors.push(`unix:supplementary_group:${name}`);
  }
  if (facts.exe && facts.sha256) {
    let digest: string | undefined;
    try {
      digest = await facts.sha256;
    } catch {
      digest = undefined; // the file could not be read: no path or hash selector, never a guess
    }
    if (digest) selectors.push(`unix:path:${facts.exe.path}`, `unix:sha256:${digest}`);
  }
  return [...new Set(selectors)].sort();
}

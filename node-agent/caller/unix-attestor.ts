import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, readlinkSync, statSync } from 'node:fs';
import type { PeerInfo } from '../../workload-api/ports.js';

/**
 * The Unix workload attestor: selectors from what the kernel says about the caller. uid/gid come
 * from SO_PEERCRED; names from /etc/passwd and /etc/group; supplementary groups, the executable's
 * path and its SHA-256 from /proc/<pid> (path and hash need the agent to run as root or with
 * CAP_SYS_PTRACE when the caller is another user; without it they are left out, never guessed).
 */
export interface UnixAttestorOptions {
  /** Read the executable and hash it (costs a file read per new caller). */
  readonly withPathAndHash?: boolean;
  readonly procRoot?: string;
  readonly passwdFile?: string;
  readonly groupFile?: string;
}

function nameFor(file: string, id: number): string | undefined {
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const parts = line.split(':');
      if (parts.length >= 3 && Number(parts[2]) === id) return parts[0];
    }
  } catch {
    // no database: no name selector
  }
  return undefined;
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

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path).on('error', reject).on('data', (c) => hash.update(c)).on('end', () => resolve(hash.digest('hex')));
  });
}

/**
 * Executable hashes by file identity (device, inode, size, mtime, ctime). Hashing a 100 MB binary
 * on every call would cost ~200 ms of each Workload API call; replacing the file changes its
 * identity, so a cached hash never outlives the bytes it was computed from.
 */
export class ExecutableHashCache {
  private readonly hashes = new Map<string, Promise<string>>();
  constructor(private readonly capacity = 1024) {}

  hash(path: string): Promise<string> {
    const st = statSync(path, { bigint: true });
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    let h = this.hashes.get(key);
    if (!h) {
      h = sha256File(path);
      h.catch(() => this.hashes.delete(key));
      if (this.hashes.size >= this.capacity) this.hashes.delete(this.hashes.keys().next().value!);
      this.hashes.set(key, h);
    }
    return h;
  }
}

export async function unixSelectors(peer: PeerInfo, options: UnixAttestorOptions = {}, hashes?: ExecutableHashCache): Promise<string[]> {
  const procRoot = options.procRoot ?? '/proc';
  const passwd = options.passwdFile ?? '/etc/passwd';
  const group = options.groupFile ?? '/etc/group';
  const selectors = [`unix:uid:${peer.uid}`, `unix:gid:${peer.gid}`];
  const user = nameFor(passwd, peer.uid);
  if (user) selectors.push(`unix:user:${user}`);
  const groupName = nameFor(group, peer.gid);
  if (groupName) selectors.push(`unix:group:${groupName}`);
  for (const g of supplementaryGroups(procRoot, peer.pid)) {
    selectors.push(`unix:supplementary_gid:${g}`);
    const name = nameFor(group, g);
    if (name) selectors.push(`unix:supplementary_group:${name}`);
  }
  if (options.withPathAndHash !== false) {
    try {
      const exe = readlinkSync(`${procRoot}/${peer.pid}/exe`);
      const digest = await (hashes ? hashes.hash(`${procRoot}/${peer.pid}/exe`) : sha256File(`${procRoot}/${peer.pid}/exe`));
      selectors.push(`unix:path:${exe}`);
      selectors.push(`unix:sha256:${digest}`);
    } catch {
      // not permitted (another user, no CAP_SYS_PTRACE) or the process is gone
    }
  }
  return [...new Set(selectors)].sort();
}

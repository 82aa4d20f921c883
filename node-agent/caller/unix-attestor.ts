import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, readlinkSync } from 'node:fs';
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

export async function unixSelectors(peer: PeerInfo, options: UnixAttestorOptions = {}): Promise<string[]> {
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
      selectors.push(`unix:path:${exe}`);
      selectors.push(`unix:sha256:${await sha256File(`${procRoot}/${peer.pid}/exe`)}`);
    } catch {
      // not permitted (another user, no CAP_SYS_PTRACE) or the process is gone
    }
  }
  return [...new Set(selectors)].sort();
}

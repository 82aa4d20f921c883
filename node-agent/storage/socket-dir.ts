import { chmodSync, existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { makeDirs } from '../../lib/fs.js';

/** A directory on the socket's path that other users cannot search (no `x` for others). */
export interface ClosedDirectory {
  readonly path: string;
  /** Octal, e.g. "0700". */
  readonly mode: string;
}

export interface SocketDirReport {
  /** Cairn's own directories whose mode was widened so the socket can be reached. */
  readonly opened: readonly string[];
  /** Directories on the way that still stop other users; not ours to change. */
  readonly closed: readonly ClosedDirectory[];
}

const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

/** `dir` and its ancestors up to the root, root first. */
function pathTo(dir: string): string[] {
  const out: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    out.unshift(d);
    if (dirname(d) === d) return out;
  }
}

/**
 * The Workload API socket is world-connectable on purpose (the kernel names each caller), but a
 * socket is only reachable through directories its callers may search. Makes the socket's directory
 * (mode ≥ 0755), and opens for search only (+x, never +r: names stay unlisted, files keep their own
 * modes) the directories between `ownedDir` — Cairn's own tree, e.g. the data dir — and the socket.
 * Nothing outside `ownedDir` is changed: directories above it that other users cannot search are
 * reported, for the agent to name in a warning.
 */
export function prepareSocketDir(socketPath: string, ownedDir: string): SocketDirReport {
  const socketDir = dirname(resolve(socketPath));
  const root = resolve(ownedDir);
  const within = (d: string): boolean => d === root || d.startsWith(root + sep);
  // Made private, then opened below as far as needed: inside the owned tree by the rule above, and
  // outside it to 0755 (made here, so ours too; the umask must not close them).
  const made = pathTo(socketDir).filter((d) => !existsSync(d));
  makeDirs(socketDir, 0o700);
  for (const d of made) if (!within(d)) chmodSync(d, 0o755);
  const opened: string[] = [];
  const rel = relative(root, socketDir);
  const inside = !(rel === '..' || rel.startsWith('..' + sep) || isAbsolute(rel));
  if (inside) {
    for (const d of pathTo(socketDir).filter(within)) {
      const mode = statSync(d).mode & 0o7777;
      const want = d === socketDir && d !== root ? mode | 0o755 : mode | 0o011;
      if (want === mode) continue;
      try {
        chmodSync(d, want);
        opened.push(d);
      } catch {
        // not ours after all (another owner): reported below if it still stops others
      }
    }
  }
  const closed = pathTo(socketDir)
    .map((path) => ({ path, mode: statSync(path).mode }))
    .filter((d) => (d.mode & 0o001) === 0)
    .map((d) => ({ path: d.path, mode: octal(d.mode) }));
  return { opened, closed };
}

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';

/**
 * A size-limited tmpfs mounted over the host directory `dir` in a private mount namespace, so a
 * process started in it meets real kernel errors (ENOSPC when full, EROFS when remounted read-only)
 * while the rest of the machine sees an ordinary empty directory. A `sleep` holds the namespace,
 * so processes can stop and start again on the same files; close() kills it and the tmpfs with it.
 * Needs root (CAP_SYS_ADMIN), as the fault tests run in CI.
 */
export interface PrivateTmpfs {
  /** The pid holding the namespace. */
  readonly pid: number;
  /** spawnCairn's `wrapper`: runs the command inside the namespace (nsenter execs it, same pid). */
  readonly wrapper: readonly string[];
  /** Where this process (outside the namespace) reaches `path` (a path under `dir`): /proc/<pid>/root/… */
  outside(path: string): string;
  remount(mode: 'ro' | 'rw'): void;
  /**
   * Writes `path` (under `dir`) until the file system answers ENOSPC, then gives back `leaveBytes`
   * (tmpfs frees whole pages on truncation) so exactly that much is free.
   */
  fill(path: string, leaveBytes?: number): void;
  close(): Promise<void>;
}

export async function privateTmpfs(dir: string, sizeKb = 256): Promise<PrivateTmpfs> {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  // unshare makes mounts private (no propagation to the host); sh and then sleep exec in place, so
  // the pid we spawned is the one holding the namespace.
  const holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=${sizeKb}k,mode=0755 cairn-test "$0" && echo mounted && exec sleep infinity`, dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => holder.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    holder.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    holder.stdout!.on('data', (d: Buffer) => (d.toString().includes('mounted') ? resolve() : undefined));
    void exited.then(() => reject(new Error(`could not mount a private tmpfs on ${dir} (root needed): ${err}`)));
  });
  const pid = holder.pid!;
  const outside = (path: string): string => {
    if (path !== dir && !path.startsWith(`${dir}/`)) throw new TypeError(`${path} is not under ${dir}`);
    return `/proc/${pid}/root${path}`;
  };
  return {
    pid,
    wrapper: ['nsenter', '-t', String(pid), '-m', '--'],
    outside,
    remount(mode) {
      const r = spawnSync('nsenter', ['-t', String(pid), '-m', 'mount', '-o', `remount,${mode}`, dir], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`remount ${mode} failed: ${r.stderr}`);
    },
    fill(path, leaveBytes = 0) {
      const fd = openSync(outside(path), 'a');
      const chunk = Buffer.alloc(64 * 1024, 0x5a);
      try {
        for (;;) {
          try {
            // a short write means the next one fails: keep going until the kernel says ENOSPC
            writeSync(fd, chunk);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw err;
          }
        }
        if (leaveBytes > 0) ftruncateSync(fd, Math.max(0, fstatSync(fd).size - leaveBytes));
      } finally {
        closeSync(fd);
      }
    },
    async close() {
      if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
      await exited;
    },
  };
}

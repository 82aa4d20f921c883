import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Writes a file so readers see the old or the new content, never a torn one: write a temp file in
 * the same directory, fsync it, rename over the target, fsync the directory. A failure up to the
 * rename (ENOSPC, EROFS, EIO…) removes the temp file and leaves the target as it was; only a failing
 * fsync of the directory, after the rename, throws with the new content already in place. Either
 * way the error thrown is the first one, not one from cleaning up.
 */
export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): void {
  const dir = dirname(path);
  makeDirs(dir);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  let renamed = false;
  try {
    fd = openSync(tmp, 'wx', mode);
    writeAll(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
    renamed = true;
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch (err) {
    // Clean-up must not replace the error that explains the failure (a second EROFS, EIO…).
    if (fd !== undefined) ignoreErrors(() => closeSync(fd!));
    if (!renamed) ignoreErrors(() => rmSync(tmp, { force: true }));
    throw err;
  }
}

/**
 * `mkdir -p` that fails with the real reason. Node's recursive mkdirSync answers ENOENT when the file
 * system is read-only (it looks for the directory its mkdir(2) could not make), hiding the EROFS; so
 * on ENOENT the missing levels are made one by one, and the first mkdir(2) that fails speaks.
 */
export function makeDirs(dir: string, mode = 0o700): void {
  try {
    mkdirSync(dir, { recursive: true, mode });
    return;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  const missing: string[] = [];
  for (let d = dir; !existsSync(d) && dirname(d) !== d; d = dirname(d)) missing.unshift(d);
  for (const d of missing) {
    try {
      mkdirSync(d, { mode });
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
  }
}

/**
 * write(2) may write less than asked without failing: on a nearly full file system it writes what
 * fits and reports ENOSPC only on the next call. fs.writeSync returns that short count, so a single
 * call would rename a truncated file over a good one.
 */
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) {
    const n = writeSync(fd, buf, off, buf.length - off);
    if (n <= 0) throw Object.assign(new Error(`write(2) wrote nothing at byte ${off} of ${buf.length}`), { code: 'EIO' });
    off += n;
  }
}

function ignoreErrors(f: () => void): void {
  try {
    f();
  } catch {
    // already failing with a better error
  }
}

/**
 * Proves `dir` takes a write now (creating it if needed): an atomic write and removal of a small
 * probe file. Throws the file system's error (err.code EACCES, EROFS, ENOSPC…) when it does not.
 */
export function probeWritable(dir: string): void {
  makeDirs(dir);
  const probe = join(dir, '.write-probe');
  writeFileAtomic(probe, 'cairn write probe\n', 0o600);
  rmSync(probe, { force: true });
}

/** What a failed write's errno means to an operator, for a sentence in a log or an error message. */
const WRITE_ERRNO_MEANING: Readonly<Record<string, string>> = {
  EACCES: "permission denied: this process's user may not write there",
  EPERM: 'operation not permitted',
  EROFS: 'the file system is mounted read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exhausted',
  EIO: 'an I/O error from the device',
  ENOTDIR: 'a part of the path is not a directory',
  EEXIST: 'a part of the path exists and is not a directory',
};

/** "the file system is mounted read-only (EROFS)"; the plain message for errors without an errno code. */
export function describeWriteError(err: unknown): string {
  const code = errnoCode(err);
  if (code === undefined) return err instanceof Error ? err.message : String(err);
  return `${WRITE_ERRNO_MEANING[code] ?? (err as Error).message} (${code})`;
}

/** The errno name of a Node.js file system error (EACCES, ENOSPC…), if it has one. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

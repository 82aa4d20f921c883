import { registerLogSource } from './logs.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { packageRoot } from '../../lib/paths.js';

export const CLI = join(packageRoot(), 'dist', 'cli', 'main.js');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export interface Spawned {
  readonly child: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  /** Resolves when stderr or stdout has printed a line matching `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface SpawnOptions {
  /**
   * A command that execs the CLI's node process in another context, e.g. `['nsenter', '-t', pid, '-m',
   * '--']` (a private mount namespace) or `['setpriv', '--reuid=65534', …, '--']` (another user).
   * It must exec, not fork, so signals and the pid reach node itself.
   */
  readonly wrapper?: readonly string[];
  /** Another build of the CLI to run (e.g. an image's file tree); default this checkout's dist. */
  readonly cli?: string;
}

/** Runs the built `cairn` CLI as a real process. */
export function spawnCairn(args: string[], env: Record<string, string | undefined> = {}, nodeArgs: string[] = [], options: SpawnOptions = {}): Spawned {
  const command = [...(options.wrapper ?? []), process.execPath, ...nodeArgs, options.cli ?? CLI, ...args];
  const child = spawn(command[0]!, command.slice(1), { env: { ...process.env, CAIRN_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    waiters.forEach((w) => w());
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    waiters.forEach((w) => w());
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // Servers (`ca start`, `agent start`, `up`) log to stderr and print their banner on stdout: scan
  // both. One-shot commands print what they were asked for on stdout (a new token, say), which is
  // not a leak.
  const server = args[1] === 'start' || args[0] === 'up';
  registerLogSource(() => (server ? out + err : err));
  return {
    child,
    exited,
    stdout: () => out,
    stderr: () => err,
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(out) || re.test(err)) {
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; stderr:\n${err}\nstdout:\n${out.slice(-2000)}`)), timeoutMs);
        waiters.push(check);
        void exited.then((code) => {
          if (!(re.test(out) || re.test(err))) {
            clearTimeout(timer);
            reject(new Error(`process exited (${code}) before ${re}; stderr:\n${err}`));
          }
        });
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Runs a one-shot CLI command to completion. */
export function runCairn(args: string[], env: Record<string, string | undefined> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  registerLogSource(() => r.stderr);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a one-shot CLI command without blocking this process (needed when the CA runs in-process). */
export function runCairnAsync(args: string[], env: Record<string, string | undefined> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    registerLogSource(() => stderr);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Resolves with what a child printed (stdout and stderr) once it matches `pattern`. */
export function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; got: ${text}`)), timeoutMs);
    const onData = (d: Buffer): void => {
      text += d.toString();
      if (pattern.test(text)) {
        clearTimeout(timer);
        resolve(text);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  });
}

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Real attackers against the Workload API's caller identification (issue 11): small C programs built
 * with the system compiler and a Workload API client that works on an inherited descriptor, all in a
 * directory any uid can read, so `setpriv` can run them as `nobody`.
 */

/** A FetchX509SVID client on a given descriptor (fd 3, inherited) or socket path: prints `DATA <ids>` or `ERR <code> <message>`. */
const CLIENT = String.raw`
const net = require('net'), http2 = require('http2'), readline = require('readline');
const args = process.argv.slice(2);
const path = args.includes('--socket') ? args[args.indexOf('--socket') + 1] : undefined;
const sock = path ? net.connect(path) : new net.Socket({ fd: 3, readable: true, writable: true });
const session = http2.connect('http://localhost', { createConnection: () => sock });
session.on('error', (e) => { console.log('ERR transport ' + e.message); process.exit(0); });
function varint(b, i) { let v = 0, s = 0; for (;;) { const x = b[i++]; v += (x & 0x7f) * 2 ** s; s += 7; if (x < 0x80) return [v, i]; } }
function fields(b) {
  const out = []; let i = 0;
  while (i < b.length) {
    let tag; [tag, i] = varint(b, i);
    if ((tag & 7) === 2) { let len; [len, i] = varint(b, i); out.push([Math.floor(tag / 8), b.subarray(i, i + len)]); i += len; }
    else if ((tag & 7) === 0) { [, i] = varint(b, i); }
    else throw new Error('unexpected wire type');
  }
  return out;
}
function fetch() {
  return new Promise((resolve) => {
    const req = session.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
    let buf = Buffer.alloc(0), status = '?', message = '', done = false;
    const finish = (line) => { if (!done) { done = true; resolve(line); } };
    req.on('response', (h) => { if (h['grpc-status'] !== undefined) { status = h['grpc-status']; message = decodeURIComponent(h['grpc-message'] || ''); } });
    req.on('trailers', (h) => { status = h['grpc-status']; message = decodeURIComponent(h['grpc-message'] || ''); });
    req.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
        const msg = buf.subarray(5, 5 + buf.readUInt32BE(1));
        const ids = fields(msg).filter(([n]) => n === 1).map(([, v]) => fields(v).find(([n]) => n === 1)[1].toString());
        finish('DATA ' + ids.join(','));
        req.close();
      }
    });
    req.on('close', () => finish('ERR ' + status + ' ' + message));
    req.on('error', () => undefined);
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}
session.on('connect', async () => {
  if (args.includes('--once')) { console.log(await fetch()); session.close(); sock.destroy(); process.exit(0); }
  console.log('READY');
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line === 'fetch') console.log(await fetch());
    else break;
  }
  process.exit(0);
});
`;

/**
 * connect-exec SOCKET WAIT TRUSTED [ARGS…] -- CLIENT [ARGS…]: connects to SOCKET, puts the
 * connection on fd 3, forks CLIENT (which inherits it), then execs TRUSTED in the process that
 * connected — at once (WAIT=0), or after a byte arrives on fd 4 (WAIT=1).
 */
const CONNECT_EXEC = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char** argv) {
  if (argc < 6) return 64;
  int sep = 0;
  for (int i = 3; i < argc; i++) if (strcmp(argv[i], "--") == 0) { sep = i; break; }
  if (!sep) return 64;
  argv[sep] = NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr*)&a, sizeof a) != 0) { perror("connect"); return 2; }
  if (fd != 3) { dup2(fd, 3); close(fd); }
  if (fork() == 0) { execv(argv[sep + 1], &argv[sep + 1]); perror("exec client"); _exit(127); }
  if (atoi(argv[2])) { char c; if (read(4, &c, 1) != 1) return 3; }
  execv(argv[3], &argv[3]);
  perror("exec trusted");
  return 127;
}
`;

/**
 * LD_PRELOAD library: in the binary it is loaded into, connects to $CAIRN_ATTACK_SOCKET and runs
 * $CAIRN_ATTACK_NODE $CAIRN_ATTACK_CLIENT --once on that connection (fd 3), waiting for it, before
 * the binary's own main() runs.
 */
const PRELOAD = String.raw`
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
__attribute__((constructor)) static void attack(void) {
  const char *s = getenv("CAIRN_ATTACK_SOCKET"), *n = getenv("CAIRN_ATTACK_NODE"), *c = getenv("CAIRN_ATTACK_CLIENT");
  if (!s || !n || !c) return;
  char sock[108], node[4096], client[4096];
  strncpy(sock, s, sizeof sock - 1); sock[sizeof sock - 1] = 0;
  strncpy(node, n, sizeof node - 1); node[sizeof node - 1] = 0;
  strncpy(client, c, sizeof client - 1); client[sizeof client - 1] = 0;
  unsetenv("LD_PRELOAD"); unsetenv("CAIRN_ATTACK_SOCKET");
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, sock, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr*)&a, sizeof a) != 0) return;
  if (fd != 3) { dup2(fd, 3); close(fd); }
  pid_t pid = fork();
  if (pid == 0) { execl(node, node, client, "--once", (char*)NULL); _exit(127); }
  int st;
  waitpid(pid, &st, 0);
  close(3);
}
`;

export interface AttackTools {
  readonly client: string;
  readonly connectExec: string;
  readonly preload: string;
  /** A copy of /usr/bin/sleep standing for a trusted service's binary. */
  readonly trusted: string;
}

/** Whether the system C compiler is there (CI has it: `npm ci` builds the peer-credential addon with it). */
export function haveCompiler(): boolean {
  return spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Builds the tools into `dir` (which must be traversable by the uids that will run them). */
export function buildAttackTools(dir: string): AttackTools {
  chmodSync(dir, 0o755);
  const client = join(dir, 'wl-client.cjs');
  writeFileSync(client, CLIENT, { mode: 0o644 });
  writeFileSync(join(dir, 'connect-exec.c'), CONNECT_EXEC);
  writeFileSync(join(dir, 'preload.c'), PRELOAD);
  const cc = (args: string[]): void => {
    const r = spawnSync('cc', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cc ${args.join(' ')} failed: ${r.stderr}`);
  };
  cc(['-O1', '-o', 'connect-exec', 'connect-exec.c']);
  cc(['-O1', '-shared', '-fPIC', '-o', 'preload.so', 'preload.c']);
  const trusted = join(dir, 'trusted-service');
  copyFileSync('/usr/bin/sleep', trusted);
  for (const f of ['connect-exec', 'preload.so', 'trusted-service']) chmodSync(join(dir, f), 0o755);
  return { client, connectExec: join(dir, 'connect-exec'), preload: join(dir, 'preload.so'), trusted };
}

/** `setpriv` prefix that runs a command as uid:gid with no supplementary groups (as root). */
export const asUid = (uid: number): string[] => (uid === process.getuid!() ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups']);

export interface Running {
  readonly child: ChildProcess;
  /** Resolves with the next output line matching `re`. */
  line(re: RegExp, timeoutMs?: number): Promise<string>;
  output(): string;
}

export function run(command: string[], options: { env?: Record<string, string>; extraFds?: number } = {}): Running {
  const stdio: ('pipe' | 'inherit' | 'ignore')[] = ['pipe', 'pipe', 'inherit'];
  for (let i = 0; i < (options.extraFds ?? 0); i++) stdio.push(i === 0 ? 'ignore' : 'pipe');
  const child = spawn(command[0]!, command.slice(1), { stdio, env: { ...process.env, ...options.env } });
  let out = '';
  let consumed = 0;
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    waiters.forEach((w) => w());
  });
  return {
    child,
    output: () => out,
    line(re, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const lines = out.slice(consumed).split('\n');
          let offset = consumed;
          for (const l of lines.slice(0, -1)) {
            offset += l.length + 1;
            if (re.test(l)) {
              consumed = offset;
              waiters.delete(check);
              clearTimeout(timer);
              resolve(l);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${re}; output so far:\n${out}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}

import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAddonPath } from '../../../lib/native-addon.js';
import { loadPeerCredentialSource, processStartTime, type PeerCredentials } from '../../../node-agent/platform/peercred.js';

const source = loadPeerCredentialSource();
const isRoot = process.getuid?.() === 0;
const [major, minor] = release().split('.').map(Number) as [number, number];
const hasPeerPidfd = major > 6 || (major === 6 && minor >= 5);

/** Connects to `path` from a real child process running as uid:gid, and holds the connection until told. */
function clientAs(path: string, uid: number, gid: number): { pid: Promise<number>; release: () => Promise<void> } {
  const script = `const s=require('net').connect(${JSON.stringify(path)});s.on('connect',()=>process.stdout.write('ok\\n'));process.stdin.on('data',()=>{s.end();process.exit(0)})`;
  const args = uid === process.getuid!() ? [process.execPath, '-e', script] : ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', process.execPath, '-e', script];
  const child = spawn(args[0]!, args.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const ready = new Promise<number>((resolve) => child.stdout!.once('data', () => resolve(child.pid!)));
  return {
    pid: ready,
    release: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.stdin!.write('x');
      }),
  };
}

describe('kernel peer credentials on a real Unix socket', () => {
  let dir: string;
  let server: Server;
  const seen: { cred: PeerCredentials; socket: Socket }[] = [];
  let path: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-peercred-'));
    chmodSync(dir, 0o755);
    path = join(dir, 'api.sock');
    server = createServer((socket) => seen.push({ cred: source.fromSocket(socket), socket }));
    await new Promise<void>((r) => server.listen(path, r));
    chmodSync(path, 0o666);
  });
  afterAll(async () => {
    for (const s of seen) {
      source.release(s.cred);
      s.socket.destroy();
    }
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const waitFor = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
  };

  it('reports the pid, uid and gid of the connecting process', async () => {
    const c = clientAs(path, process.getuid!(), process.getgid!());
    const pid = await c.pid;
    await waitFor(1);
    const { cred } = seen[0]!;
    expect(cred).toMatchObject({ pid, uid: process.getuid!(), gid: process.getgid!() });
    expect(cred.startTime).toBe(processStartTime(pid));
    expect(source.stillSame(cred)).toBe(true);
    await c.release();
    await new Promise((r) => setTimeout(r, 100));
    // the process is gone: a pidfd turns readable, a start time no longer matches
    expect(source.stillSame(cred)).toBe(false);
  });

  it.runIf(isRoot)('tells different uids and gids apart (setpriv children)', async () => {
    const before = seen.length;
    const a = clientAs(path, 1234, 2345);
    const b = clientAs(path, 65534, 65534);
    const [pa, pb] = await Promise.all([a.pid, b.pid]);
    await waitFor(before + 2);
    const creds = seen.slice(before).map((s) => s.cred);
    expect(creds.find((c) => c.pid === pa)).toMatchObject({ uid: 1234, gid: 2345 });
    expect(creds.find((c) => c.pid === pb)).toMatchObject({ uid: 65534, gid: 65534 });
    await Promise.all([a.release(), b.release()]);
  });

  it('uses a pidfd where the kernel has SO_PEERPIDFD, else the start time', () => {
    const { cred } = seen[0]!;
    if (hasPeerPidfd) expect(cred.pidfd).toBeGreaterThanOrEqual(0);
    expect(cred.startTime).toMatch(/^\d+$/);
  });

  // Only where the kernel hands out pidfds (SO_PEERPIDFD, Linux 6.5): elsewhere the check reads /proc, no poll.
  it.runIf(hasPeerPidfd)('is not failed by a signal that interrupts the liveness check (a CPU profiler samples with SIGPROF)', () => {
    // A child checks its own connection's pidfd in a loop while V8's profiler signals it every 50 µs:
    // poll() then fails with EINTR now and again, which used to fail the caller's attestation.
    const addon = nativeAddonPath('cairn_peercred');
    const sock = join(dir, 'self.sock');
    const script = `const a=require(${JSON.stringify(addon)});const net=require('net');
const srv=net.createServer((s)=>{const c=a.peerCredentials(s._handle.fd);let n=0;const t=Date.now();
try{while(Date.now()-t<500){for(let i=0;i<1000;i++)if(!a.pidfdAlive(c.pidfd))throw new Error('dead');n+=1000}console.log('ok '+n)}
catch(e){console.log('error: '+e.message)}process.exit(0)});srv.listen(${JSON.stringify(sock)},()=>net.connect(${JSON.stringify(sock)}));`;
    const run = spawnSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'prof')}`, '--cpu-prof-interval', '50', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(run.stdout.trim()).toMatch(/^ok \d+$/);
  });

  it('refuses a non-socket descriptor with a clear error', () => {
    const fd = openSync(process.execPath, 'r');
    try {
      expect(() => source.fromSocket({ _handle: { fd } } as unknown as Socket)).toThrow(/SO_PEERCRED.*socket/i);
    } finally {
      closeSync(fd);
    }
    expect(() => source.fromSocket({} as Socket)).toThrow(/file descriptor/);
  });
});

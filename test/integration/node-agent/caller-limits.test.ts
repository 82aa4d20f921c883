import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../../node-agent/main.js';
import { startTestCa, type TestCa } from '../../support/ca.js';
import { storeKind } from '../../support/db.js';
import { capturingLogger } from '../../support/logs.js';
import { runCairnAsync } from '../../support/processes.js';
import { asUid, run } from '../../support/workload-attacks.js';
import { waitFor } from '../../support/wait.js';

/**
 * Issue 11 item 6 (Workload API): idle connections are closed, a uid's connections are capped and
 * refused before anything is read about them, and a caller with no identity cannot make the agent
 * rewrite unregistered.json on every call. Real agent, real socket, real `nobody` processes.
 */
const TD = 'limits.test';
const NOBODY = 65534;
const IDLE_MS = 3000;
const isRoot = process.getuid?.() === 0;

/** Opens N connections to a socket and holds them, reporting how many are still open until none is. */
const FLOOD = String.raw`
const net = require('net');
const [path, total] = [process.argv[2], Number(process.argv[3])];
let open = 0, closed = 0, failed = 0, attempted = 0;
const start = Date.now();
function one() {
  return new Promise((resolve) => {
    attempted++;
    const s = net.connect(path);
    s.on('connect', () => { open++; resolve(); });
    s.on('error', () => { failed++; resolve(); });
    s.on('close', (hadError) => { if (!hadError || open > 0) { open = Math.max(0, open - 1); closed++; } });
    s.resume();
  });
}
(async () => {
  for (let i = 0; i < total; i += 100) await Promise.all(Array.from({ length: Math.min(100, total - i) }, one));
  console.log('CONNECTED ' + attempted + ' failed ' + failed);
  const timer = setInterval(() => {
    if (open === 0) { console.log('ALLCLOSED ' + (Date.now() - start)); clearInterval(timer); process.exit(0); }
  }, 50);
})();
`;

const ownFds = (): number => readdirSync('/proc/self/fd').length;

function session(socket: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = h2connect('http://localhost', { createConnection: () => netConnect(socket) });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** One FetchX509SVID call on a fresh connection: the gRPC status it ended with. */
async function fetchStatus(socket: string): Promise<string> {
  const s = await session(socket);
  try {
    return await new Promise<string>((resolve) => {
      const req = s.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
      let status = '';
      req.on('response', (h) => (status = String(h['grpc-status'] ?? status)));
      req.on('trailers', (h) => (status = String(h['grpc-status'] ?? status)));
      req.on('close', () => resolve(status));
      req.on('error', () => resolve('transport error'));
      req.resume();
      req.end(Buffer.from([0, 0, 0, 0, 0]));
    });
  } finally {
    s.destroy();
  }
}

describe(`Workload API connection limits (${storeKind()} store)`, () => {
  let ca: TestCa;
  let agent: AgentHandle | undefined;
  let dir: string;
  const log = capturingLogger();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-limits-'));
    chmodSync(dir, 0o755);
    ca = await startTestCa();
    await ca.admin('/v1/trust-domains', { body: { name: TD } });
    const { token } = await (await ca.admin('/v1/tokens', { body: { trustDomain: TD } })).json();
    mkdirSync(join(dir, 'sock'), { mode: 0o755 });
    // No entries: every caller here is unregistered (answered PermissionDenied, recorded for discovery).
    agent = await startAgent({ dataDir: join(dir, 'agent'), joinToken: token, socketPath: join(dir, 'sock', 'api.sock'), workloadIdleTimeoutMs: IDLE_MS }, { logger: log.logger });
    await agent.whenReady();
  });
  afterAll(async () => {
    await agent?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.runIf(isRoot)('2,000 idle connections from nobody hold at most its 64 (not 4,000 descriptors), and those are closed once idle', { timeout: 300_000 }, async () => {
    writeFileSync(join(dir, 'flood.cjs'), FLOOD, { mode: 0o644 });
    const before = ownFds();
    const flood = run(['prlimit', '--nofile=8192:8192', ...asUid(NOBODY), process.execPath, join(dir, 'flood.cjs'), agent!.socketPath, '2000']);
    try {
      expect(await flood.line(/^CONNECTED /, 120_000)).toMatch(/^CONNECTED 2000 failed \d+$/);
      // refused at accept: the agent holds a socket (and a pidfd) only for the 64 it took
      const held = await waitFor('the refused connections to be closed', () => {
        const n = ownFds() - before;
        return n <= 2 * 64 + 16 ? n : undefined;
      });
      expect(held).toBeLessThanOrEqual(2 * 64 + 16);
      // another uid is still served meanwhile (PermissionDenied is an answer: it has no entry)
      expect(await fetchStatus(agent!.socketPath)).toBe('7');
      // the 64 it holds have no stream: closed after the idle timeout
      const closedAfter = Number((await flood.line(/^ALLCLOSED /, 60_000)).split(' ')[1]);
      expect(closedAfter).toBeGreaterThanOrEqual(IDLE_MS);
      await waitFor('the agent to release them', () => (ownFds() - before <= 16 ? true : undefined));
      const refusals = log.lines().map((l) => JSON.parse(l) as { event?: string; uid?: number }).filter((l) => l.event === 'workload_api.connection_refused' && l.uid === NOBODY);
      // 1,936 refusals: one log line a minute (this phase may last over a minute on a loaded machine)
      expect(refusals.length).toBeGreaterThanOrEqual(1);
      expect(refusals.length).toBeLessThanOrEqual(3);
    } finally {
      flood.child.kill();
    }
  });

  it('closes a connection with no stream after the configured idle time, and not one that holds a stream', { timeout: 60_000 }, async () => {
    const t0 = Date.now();
    const idle = await session(agent!.socketPath);
    const idleClosed = new Promise<number>((resolve) => idle.once('close', () => resolve(Date.now() - t0)));

    const busy = await session(agent!.socketPath);
    let busyClosed = false;
    busy.once('close', () => (busyClosed = true));
    // A stream that stays open (this caller has no identity, so a complete FetchX509SVID would end at
    // once with PermissionDenied): a request whose message never completes.
    const held = busy.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
    held.on('error', () => undefined);
    held.write(Buffer.from([0, 0, 0, 0]));

    const after = await idleClosed;
    expect(after).toBeGreaterThanOrEqual(IDLE_MS - 50);
    // the busy one outlives two idle periods while its stream is open…
    await new Promise((r) => setTimeout(r, 2 * IDLE_MS));
    expect(busyClosed).toBe(false);
    // …and is closed an idle period after its last stream ends
    const tEnd = Date.now();
    held.close();
    const closedIn = await waitFor('the busy connection to be closed once idle', () => (busyClosed ? Date.now() - tEnd : undefined), 30_000);
    expect(closedIn).toBeGreaterThanOrEqual(IDLE_MS - 50);
    busy.destroy();
  });

  it('`cairn agent start` refuses bad values for the new flags, naming the flag', async () => {
    for (const [args, message] of [
      [['--workload-idle-timeout', 'soon'], /--workload-idle-timeout must be a duration like 30s/],
      [['--workload-max-connections-per-uid', '0'], /--workload-max-connections-per-uid must be a whole number/],
      [['--workload-max-connections-per-uid', 'lots'], /--workload-max-connections-per-uid must be a whole number/],
      [['--workload-attestor', 'docker'], /--workload-attestor must be one of unix, k8s, systemd \(got "docker"\)/],
    ] as const) {
      const r = await runCairnAsync(['agent', 'start', '--data-dir', join(dir, 'unused'), ...args], { CAIRN_JOIN_TOKEN: undefined });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });

  it('a caller with no identity calling in a loop does not make the agent rewrite unregistered.json on every call', { timeout: 120_000 }, async () => {
    const file = join(dir, 'agent', 'unregistered.json');
    const mine = (): number => agent!.agent.discovery.list().filter((c) => c.selectors.includes(`unix:uid:${process.getuid!()}`)).reduce((n, c) => n + c.count, 0);
    const startCount = mine();
    const inodes = new Set<bigint>();
    const t0 = Date.now();
    for (let i = 0; i < 40; i++) {
      expect(await fetchStatus(agent!.socketPath)).toBe('7');
      try {
        inodes.add(statSync(file, { bigint: true }).ino); // every write is a new file renamed into place
      } catch {
        // not written yet
      }
    }
    const elapsed = Date.now() - t0;
    // the list in memory is current at every call…
    expect(mine() - startCount).toBe(40);
    // …the file is rewritten at most once per 5 s (plus the first write)
    expect(inodes.size).toBeLessThanOrEqual(2 + Math.floor(elapsed / 5000));
    expect(inodes.size).toBeLessThan(40);
    // and what it holds catches up within the interval
    await waitFor('unregistered.json to catch up', () => {
      const listed = (JSON.parse(readFileSync(file, 'utf8')) as { selectors: string[]; count: number }[]).filter((c) => c.selectors.includes(`unix:uid:${process.getuid!()}`)).reduce((n, c) => n + c.count, 0);
      return listed === mine() ? true : undefined;
    }, 15_000);
  });
});

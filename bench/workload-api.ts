import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as h2connect, constants as h2constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { packageRoot } from '../lib/paths.js';
import { JWTSVIDRequestSchema } from '../workload-api/gen/workload_pb.js';
import { spawnCairn, type Spawned } from '../test/support/processes.js';
import { startBenchCa } from './ca-process.js';
import { fmt, machine, percentile, writeSection } from './harness.js';

/**
 * Issue 4's figures: the agent (`cairn agent start`, its own process) serving the Workload API on a
 * Unix socket, against a raw baseline — a bare node:http2 server process answering with recorded
 * gRPC frames (bench/raw-grpc-server.mjs). The client is a bare node:http2 client in this process.
 */

const X509_PATH = '/SpiffeWorkloadAPI/FetchX509SVID';
const JWT_PATH = '/SpiffeWorkloadAPI/FetchJWTSVID';
const EMPTY_MESSAGE: Buffer = Buffer.from([0, 0, 0, 0, 0]);

function frame(message: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]) as Buffer;
}

/** A new connection; one refused with EAGAIN (the server's listen backlog is full) is tried again shortly. */
function session(socket: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = h2connect('http://localhost', { createConnection: () => netConnect(socket) });
    s.once('connect', () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EAGAIN') return reject(err);
      setTimeout(() => session(socket).then(resolve, reject), 5);
    });
  });
}

/** Opens a gRPC call; `onMessage` gets each complete message's frame (length prefix included). */
function call(s: ClientHttp2Session, path: string, body: Buffer, onMessage: (frame: Buffer, n: number) => void): ClientHttp2Stream {
  const req = s.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
  let buf: Buffer = Buffer.alloc(0);
  let n = 0;
  req.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      onMessage(buf.subarray(0, 5 + len), ++n);
      buf = buf.subarray(5 + len);
    }
  });
  req.on('error', () => undefined);
  req.end(body);
  return req;
}

function firstMessage(s: ClientHttp2Session, path: string, body: Buffer = EMPTY_MESSAGE): Promise<{ frame: Buffer; stream: ClientHttp2Stream }> {
  return new Promise((resolve, reject) => {
    const stream = call(s, path, body, (f, n) => n === 1 && resolve({ frame: Buffer.from(f), stream }));
    stream.on('response', (h) => {
      if (h['grpc-status'] && h['grpc-status'] !== '0') reject(new Error(`grpc-status ${h['grpc-status']}: ${h['grpc-message']}`));
    });
    stream.on('trailers', (h) => {
      if (h['grpc-status'] !== '0') reject(new Error(`grpc-status ${h['grpc-status']}: ${h['grpc-message']}`));
    });
  });
}

const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Time to first message of a brand-new client (connect, call, first complete message), sequentially. */
async function ttfmSamples(socket: string, samples: number, out: number[] = []): Promise<number[]> {
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    const s = await session(socket);
    await firstMessage(s, X509_PATH);
    out.push(performance.now() - t0);
    s.destroy();
  }
  return out;
}

/** Time to first message of a new stream on one already-open connection, sequentially (each stream is then cancelled). */
async function streamSamples(socket: string, samples: number, out: number[] = []): Promise<number[]> {
  const s = await session(socket);
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    const { stream } = await firstMessage(s, X509_PATH);
    out.push(performance.now() - t0);
    stream.close(h2constants.NGHTTP2_CANCEL);
  }
  s.destroy();
  return out;
}

interface Ttfm {
  readonly burst: number[];
  readonly samples: number[];
  readonly streams: number[];
  rss: number;
}

/** Opens `clients` connections with one FetchX509SVID stream each, all at once; returns them and each one's TTFM. */
async function holdStreams(socket: string, clients: number, perClient = 1, batch = clients): Promise<{ sessions: ClientHttp2Session[]; ttfm: number[]; counts: number[]; onAll: (n: number) => Promise<number[]> }> {
  const counts: number[] = [];
  const arrivals: number[][] = [];
  /** How many streams hold their n-th message, by n: one check per message, not one scan of 10,000 streams. */
  const holding: number[] = [];
  const waiters = new Map<number, () => void>();
  const sessions: ClientHttp2Session[] = [];
  while (sessions.length < clients) sessions.push(...(await Promise.all(Array.from({ length: Math.min(batch, clients - sessions.length) }, () => session(socket)))));
  const ttfm: number[] = [];
  await Promise.all(
    sessions.flatMap((s) =>
      Array.from({ length: perClient }, () => {
        const idx = counts.push(0) - 1;
        arrivals.push([]);
        const t0 = performance.now();
        return new Promise<void>((resolve) => {
          call(s, X509_PATH, EMPTY_MESSAGE, (_f, n) => {
            counts[idx] = n;
            arrivals[idx]!.push(performance.now());
            holding[n] = (holding[n] ?? 0) + 1;
            if (n === 1) {
              ttfm.push(performance.now() - t0);
              resolve();
            }
            if (holding[n] === counts.length) waiters.get(n)?.();
          });
        });
      }),
    ),
  );
  /** Resolves with every stream's arrival time of message `n` once all have it. */
  const onAll = (n: number): Promise<number[]> =>
    new Promise((resolve) => {
      const done = (): void => resolve(arrivals.map((a) => a[n - 1]!));
      if (holding[n] === counts.length) done();
      else waiters.set(n, done);
    });
  return { sessions, ttfm, counts, onAll };
}

export async function benchWorkloadApi(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-wl-'));
  const children: (Spawned | ChildProcess)[] = [];
  try {
    const ca = await startBenchCa(join(dir, 'ca'));
    children.push(ca.process);
    const admin = ca.admin;
    const TD = 'wlbench.test';
    const IDENTITIES = 1000;
    await admin('/v1/trust-domains', { name: TD, x509SvidTtlSeconds: 3600 });
    const { token, spiffeId: agentId } = await admin('/v1/tokens', { trustDomain: TD });
    for (let i = 0; i < IDENTITIES; i++) await admin('/v1/entries', { spiffeId: `spiffe://${TD}/svc/${i}`, parentId: agentId, selectors: [`unix:uid:${20000 + i}`] });
    const mine = await admin('/v1/entries', { spiffeId: `spiffe://${TD}/bench`, parentId: agentId, selectors: [`unix:uid:${process.getuid!()}`] });

    const socket = join(dir, 'agent.sock');
    const profile = process.env.CAIRN_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CAIRN_BENCH_PROFILE}`] : [];
    // every bench client is this process's uid: lift the per-uid connection cap (default 64) above the 1,000 it opens
    const agent = spawnCairn(['agent', 'start', '--socket', socket, '--join-token', token, '--workload-max-connections-per-uid', '20000'], { CAIRN_DATA_DIR: join(dir, 'node'), CAIRN_LOG_LEVEL: 'warn' }, profile);
    children.push(agent);
    await agent.waitFor(/serving the Workload API/);
    // ready when every identity is issued (the agent issues for all its entries, callers or not)
    for (;;) {
      let issued = 0;
      let pageToken = '';
      do {
        const page = await admin(`/v1/x509-svids?spiffeIdPrefix=${encodeURIComponent(`spiffe://${TD}/`)}&pageSize=500${pageToken ? `&pageToken=${pageToken}` : ''}`);
        issued += page.svids.length;
        pageToken = page.nextPageToken ?? '';
      } while (pageToken);
      if (issued >= IDENTITIES + 1) break;
      await sleep(200);
    }
    await sleep(1000);
    const agentPid = agent.child.pid!;

    // recorded frames for the raw server: exactly what the agent sends this caller
    const probe = await session(socket);
    const x509Frame = (await firstMessage(probe, X509_PATH)).frame;
    const jwtBody = frame(toBinary(JWTSVIDRequestSchema, create(JWTSVIDRequestSchema, { audience: ['bench'] })));
    const jwtFrame = (await firstMessage(probe, JWT_PATH, jwtBody)).frame;
    probe.destroy();
    writeFileSync(join(dir, 'x509.bin'), x509Frame);
    writeFileSync(join(dir, 'jwt.bin'), jwtFrame);
    const rawSocket = join(dir, 'raw.sock');
    const raw = spawn(process.execPath, [join(packageRoot(), 'bench/raw-grpc-server.mjs'), rawSocket, join(dir, 'x509.bin'), join(dir, 'jwt.bin')], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(raw);
    await new Promise<void>((resolve) => raw.stdout!.once('data', () => resolve()));
    const grpcjsSocket = join(dir, 'grpcjs.sock');
    const grpcjs = spawn(process.execPath, [join(packageRoot(), 'bench/raw-grpcjs-server.mjs'), grpcjsSocket, join(dir, 'x509.bin'), join(dir, 'jwt.bin')], { stdio: ['ignore', 'pipe', 'inherit'], cwd: packageRoot() });
    children.push(grpcjs);
    await new Promise<void>((resolve) => grpcjs.stdout!.once('data', () => resolve()));
    const pidOf = (target: string): number => (target === socket ? agentPid : target === rawSocket ? raw.pid! : grpcjs.pid!);

    // ---- TTFM: 1,000 clients opening at once (one server after the other), then new clients and new streams
    // while each server holds its 1,000: the servers take turns, 100 samples at a time, so a load change on
    // the shared machine falls on all three alike.
    const CLIENTS = 1000;
    const SAMPLES = 1000;
    const TURN = 100;
    await ttfmSamples(socket, 50); // warm-up (first call hashes the caller's executable)
    await ttfmSamples(rawSocket, 50);
    await ttfmSamples(grpcjsSocket, 50);
    const idleRss = { ours: rssKb(agentPid), raw: rssKb(raw.pid!) };
    const targets = [socket, rawSocket, grpcjsSocket];
    const held: Awaited<ReturnType<typeof holdStreams>>[] = [];
    // grpc-js listens with a short backlog (connects beyond it fail with EAGAIN): its 1,000 clients connect 50 at a time
    for (const target of targets) held.push(await holdStreams(target, CLIENTS, 1, target === grpcjsSocket ? 50 : CLIENTS));
    const ttfms: Ttfm[] = held.map((h) => ({ burst: h.ttfm, samples: [], streams: [], rss: 0 }));
    for (let taken = 0; taken < SAMPLES; taken += TURN) {
      for (const [i, target] of targets.entries()) await ttfmSamples(target, TURN, ttfms[i]!.samples);
      for (const [i, target] of targets.entries()) await streamSamples(target, TURN, ttfms[i]!.streams);
    }
    for (const [i, target] of targets.entries()) ttfms[i]!.rss = rssKb(pidOf(target));
    const [oursTtfm, rawTtfm, grpcjsTtfm] = ttfms as [Ttfm, Ttfm, Ttfm];
    held.forEach((h) => h.sessions.forEach((s) => s.destroy()));
    await sleep(500);

    // ---- FetchJWTSVID, cached: sequential unary calls, one connection per server. The three servers take
    // turns, 500 calls each, six turns: a load change on the shared machine falls on all three alike.
    const JWT_ROUNDS = 6;
    const JWT_PER_ROUND = 500;
    const jwtSessions = await Promise.all(targets.map((t) => session(t)));
    const unary = async (s: ClientHttp2Session, n: number, out: number[] = []): Promise<number[]> => {
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await firstMessage(s, JWT_PATH, jwtBody);
        out.push(performance.now() - t0);
      }
      return out;
    };
    // warm-up, the same for every server: after 500 calls V8 still optimized ~150 functions of the agent's
    // call path during the next 8,000 (~15% of its CPU there, measured with perf); after 5,000 calls, 8.
    for (const s of jwtSessions) await unary(s, 5000);
    const oursJwt: number[] = [];
    const rawJwt: number[] = [];
    const grpcjsJwt: number[] = [];
    for (let round = 0; round < JWT_ROUNDS; round++) {
      for (const [i, out] of [oursJwt, rawJwt, grpcjsJwt].entries()) await unary(jwtSessions[i]!, JWT_PER_ROUND, out);
    }
    jwtSessions.forEach((s) => s.destroy());

    // ---- rotation pushed to 10,000 open streams (100 connections × 100 streams)
    const push = async (target: string, trigger: () => Promise<void>) => {
      const held = await holdStreams(target, 100, 100);
      await sleep(1000);
      const t0 = performance.now();
      const done = held.onAll(2);
      await trigger();
      const arrivals = await done;
      const rss = rssKb(pidOf(target));
      held.sessions.forEach((s) => s.destroy());
      await sleep(500);
      return { total: Math.max(...arrivals) - t0, spread: Math.max(...arrivals) - Math.min(...arrivals), rss };
    };
    // three rotations each, taking turns with the bare server; the median of three is reported
    const ROTATIONS = 3;
    const oursPushes: Awaited<ReturnType<typeof push>>[] = [];
    const rawPushes: Awaited<ReturnType<typeof push>>[] = [];
    for (let round = 0; round < ROTATIONS; round++) {
      oursPushes.push(
        await push(socket, async () => {
          // an entry change: the agent syncs it, re-issues the SVID and pushes the new state to every stream
          await admin(`/v1/entries/${mine.id}`, { hint: `rotated-${round}` }, 'PATCH');
        }),
      );
      rawPushes.push(
        await push(rawSocket, async () => {
          const s = await session(rawSocket);
          await new Promise<void>((resolve) => s.request({ ':method': 'POST', ':path': '/push' }).on('response', () => resolve()).end());
          s.destroy();
        }),
      );
    }
    const medianPush = (xs: Awaited<ReturnType<typeof push>>[]) => [...xs].sort((a, b) => a.total - b.total)[Math.floor(xs.length / 2)]!;
    const oursPush = medianPush(oursPushes);
    const rawPush = medianPush(rawPushes);

    const p = (xs: number[], q: number): string => percentile(xs, q).toFixed(2);
    const ratio = (a: number[], b: number[], q: number): string => (percentile(a, q) / percentile(b, q)).toFixed(1);
    const mb = (kb: number): string => (kb / 1024).toFixed(1);
    const perStream = (rss: number, idle: number): string => fmt(Math.max(0, rss - idle) / 10_000);
    const both = (xs: number[]): string => `p50 ${p(xs, 50)} ms, p99 ${p(xs, 99)} ms`;
    const md = `## Workload API and node agent (issues 4, 17)

Machine: ${machine()}. The agent runs as \`cairn agent start\` (its own process) with ${fmt(IDENTITIES + 1)} workload identities
(${fmt(IDENTITIES)} entries for other uids plus this caller's), synced from a CA process on PostgreSQL. Clients are bare
node:http2 gRPC callers in the bench process, each a new Unix-socket connection attested from its kernel credentials.
Raw baselines, each its own process on a Unix socket answering with the agent's own recorded messages (no attestation,
no protobuf): a bare node:http2 server (bench/raw-grpc-server.mjs) and a bare @grpc/grpc-js server
(bench/raw-grpcjs-server.mjs). Measured ${new Date().toISOString().slice(0, 10)}.

| what | Cairn agent | bare node:http2 (same run) | bare @grpc/grpc-js (same run) | p99 ratio | target |
|---|---:|---:|---:|---:|---:|
| FetchX509SVID time to first message, new client while ${fmt(CLIENTS)} streams are open (${SAMPLES} samples; connect + attest + first message) | **${both(oursTtfm.samples)}** | ${both(rawTtfm.samples)} | ${both(grpcjsTtfm.samples)} | ×${ratio(oursTtfm.samples, rawTtfm.samples, 99)} of node:http2 | ≤ ×1.5 |
| the same on an already-open connection (a new stream; ${SAMPLES} samples) | **${both(oursTtfm.streams)}** | ${both(rawTtfm.streams)} | ${both(grpcjsTtfm.streams)} | ×${ratio(oursTtfm.streams, grpcjsTtfm.streams, 99)} of grpc-js | ≤ ×1.5 |
| ${fmt(CLIENTS)} clients opening at once (queueing included) | ${both(oursTtfm.burst)} | ${both(rawTtfm.burst)} | — | ×${ratio(oursTtfm.burst, rawTtfm.burst, 99)} of node:http2 | — |
| FetchJWTSVID, cached token, sequential on one connection (${fmt(JWT_ROUNDS * JWT_PER_ROUND)} calls; the servers take turns, ${JWT_PER_ROUND} calls at a time) | **${both(oursJwt)}** | ${both(rawJwt)} | ${both(grpcjsJwt)} | ×${ratio(oursJwt, rawJwt, 99)} of node:http2 | ≤ ×1.5 |
| rotation pushed to 10,000 open streams (100 connections × 100): admin entry change → last stream has the new SVID (median of ${ROTATIONS}: ${oursPushes.map((x) => fmt(x.total)).join(', ')} ms) | **${fmt(oursPush.total)} ms** (first→last stream ${fmt(oursPush.spread)} ms) | trigger → last stream ${fmt(rawPush.total)} ms (spread ${fmt(rawPush.spread)} ms; of ${rawPushes.map((x) => fmt(x.total)).join(', ')} ms) | — | ×${(oursPush.total / rawPush.total).toFixed(1)} | ≤ 500 ms |
| RSS with ${fmt(CLIENTS)} open streams / with 10,000; per open stream above idle | ${mb(oursTtfm.rss)} MB / ${mb(oursPush.rss)} MB; ${perStream(oursPush.rss, idleRss.ours)} KB | ${mb(rawTtfm.rss)} MB / ${mb(rawPush.rss)} MB; ${perStream(rawPush.rss, idleRss.raw)} KB | ${mb(grpcjsTtfm.rss)} MB / — | — | near bare |

The rotation figure for Cairn includes the whole path: the admin REST change, NOTIFY → the agent's long-poll, a
new key and CSR, issuance by the CA, and writing the new state to every stream; the baseline only writes a
recorded frame to each stream. The two cores are shared by the bench client, the agent, the CA, PostgreSQL and
the baselines (and, on a shared machine, whatever else runs): tails move from run to run, ratios less. So for the
per-call figures the three servers take turns (${TURN} samples, or ${JWT_PER_ROUND} FetchJWTSVID calls, at a time),
and a load change falls on all three alike.

How the agent serves these calls (issue 17): plain gRPC calls of FetchX509SVID, FetchX509Bundles, FetchJWTBundles
and FetchJWTSVID are served straight on their HTTP/2 stream (workload-api/direct/), not through connect-node's
per-call pipeline of async iterables, interceptors and per-stream serialization. Each state is encoded and framed
once per selector set, and that one Buffer is written to every stream holding it; all open streams share one
change subscription. Every other call (SDS, health, ValidateJWTSVID, Connect, gRPC-Web, JSON or compressed
requests) still goes through connect-node. Attestation happens once per connection, at accept;
/etc/passwd and /etc/group are re-read only when their file identity changes.`;
    writeSection('workload-api', md);
    console.log(md);
  } finally {
    for (const c of children.reverse()) {
      if ('stop' in c) await c.stop();
      else c.kill();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

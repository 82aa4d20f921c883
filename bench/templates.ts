import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCairn, type Spawned } from '../test/support/processes.js';
import { issuedUnder, startBenchCa, type BenchCa } from './ca-process.js';
import { connectAs } from './connect-as.js';
import { fmt, machine, median, percentile, writeSection } from './harness.js';

/**
 * Issue 16's figure: one agent serving 1,000 distinct callers from ONE workload identity template
 * (`spiffe://{td}/uid/{unix:uid}`, no entries), against the same agent build serving the same 1,000
 * callers from 1,000 entries. Each caller is its own Unix-socket connection whose kernel credentials
 * (SO_PEERCRED, taken at connect()) carry a distinct uid: the bench process (root) switches its
 * effective uid and gid around each connect() call, so the agent attests 1,000 different uids from
 * the kernel exactly as it would 1,000 processes (they share one pid and executable, which only
 * makes the unix attestor's per-process work — an executable hash cached by file identity — cheaper
 * than with 1,000 real processes).
 */

const X509_PATH = '/SpiffeWorkloadAPI/FetchX509SVID';
const EMPTY_MESSAGE = Buffer.from([0, 0, 0, 0, 0]);
const CALLERS = 1000;
const TD = 'tplbench.test';

const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A Unix-socket connection made with effective uid/gid `uid`: the peer credentials the agent reads. */

/** Connect as `uid`, open FetchX509SVID, resolve with the time to its first complete message; the stream stays open. */
async function firstSvid(socket: string, uid: number, open: ClientHttp2Session[]): Promise<number> {
  const t0 = performance.now();
  const sock = await connectAs(socket, uid);
  const s = h2connect('http://localhost', { createConnection: () => sock });
  open.push(s);
  return new Promise((resolve, reject) => {
    const req = s.request({ ':method': 'POST', ':path': X509_PATH, 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
    let buf = Buffer.alloc(0);
    req.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) resolve(performance.now() - t0);
    });
    req.on('response', (h) => {
      if (h['grpc-status'] && h['grpc-status'] !== '0') reject(new Error(`uid ${uid}: grpc-status ${h['grpc-status']}: ${h['grpc-message']}`));
    });
    req.on('trailers', (h) => reject(new Error(`uid ${uid}: stream ended: grpc-status ${h['grpc-status']}: ${h['grpc-message']}`)));
    req.on('error', reject);
    req.end(EMPTY_MESSAGE);
  });
}

interface Wave {
  readonly ttfm: number[];
  /** From the first connect to the last caller's first message. */
  readonly allMs: number;
  readonly rssKb: number;
}

/** 1,000 callers (distinct uids), `concurrency` connecting at a time; their streams stay open until the RSS is read. */
async function wave(socket: string, agentPid: number, uids: readonly number[], concurrency: number): Promise<Wave> {
  const open: ClientHttp2Session[] = [];
  const ttfm: number[] = [];
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < uids.length) ttfm.push(await firstSvid(socket, uids[next++]!, open));
  }));
  const allMs = performance.now() - t0;
  await sleep(500);
  const rss = rssKb(agentPid);
  open.forEach((s) => s.destroy());
  await sleep(500);
  return { ttfm, allMs, rssKb: rss };
}

async function startAgent(ca: BenchCa, dir: string, name: string): Promise<{ agent: Spawned; agentId: string; socket: string }> {
  const { token, spiffeId } = await ca.admin('/v1/tokens', { trustDomain: TD });
  const socket = join(dir, `${name}.sock`);
  const agent = spawnCairn(['agent', 'start', '--socket', socket, '--join-token', token], { CAIRN_DATA_DIR: join(dir, name), CAIRN_LOG_LEVEL: 'warn' });
  await agent.waitFor(/serving the Workload API/);
  return { agent, agentId: spiffeId, socket };
}


export async function benchTemplates(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('this benchmark connects as 1,000 uids: run it as root');
  const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-tpl-'));
  chmodSync(dir, 0o755); // the callers connect as other uids
  const children: Spawned[] = [];
  try {
    const ca = await startBenchCa(join(dir, 'ca'));
    children.push(ca.process);
    await ca.admin('/v1/trust-domains', { name: TD, x509SvidTtlSeconds: 3600 });

    // ---- 1,000 entries: the agent issues every SVID at sync, before any caller comes
    const byEntry = await startAgent(ca, dir, 'entries');
    children.push(byEntry.agent);
    const entryUids = Array.from({ length: CALLERS }, (_, i) => 30000 + i);
    for (let i = 0; i < CALLERS; i += 10) {
      await Promise.all(entryUids.slice(i, i + 10).map((uid) => ca.admin('/v1/entries', { spiffeId: `spiffe://${TD}/entry/${uid}`, parentId: byEntry.agentId, selectors: [`unix:uid:${uid}`] })));
    }
    while ((await issuedUnder(ca, `spiffe://${TD}/entry/`)) < CALLERS) await sleep(200);
    await sleep(1000);
    const entryIdleRss = rssKb(byEntry.agent.child.pid!);
    const entries = await wave(byEntry.socket, byEntry.agent.child.pid!, entryUids, 50);
    await byEntry.agent.stop();

    // ---- one template: nothing is issued until a caller comes; its first answer waits for its SVID
    const byTemplate = await startAgent(ca, dir, 'template');
    children.push(byTemplate.agent);
    await ca.admin('/v1/templates', { trustDomain: TD, parentId: byTemplate.agentId, spiffeIdTemplate: 'spiffe://{td}/uid/{unix:uid}' });
    await sleep(2000); // the template reaches the agent through sync
    const templateIdleRss = rssKb(byTemplate.agent.child.pid!);
    const templateUids = Array.from({ length: CALLERS }, (_, i) => 40000 + i);
    const cold = await wave(byTemplate.socket, byTemplate.agent.child.pid!, templateUids, 50);
    // the same callers again (new connections): their identities are held (10 minutes after last use)
    const warm = await wave(byTemplate.socket, byTemplate.agent.child.pid!, templateUids, 50);
    const issued = await issuedUnder(ca, `spiffe://${TD}/uid/`);
    await byTemplate.agent.stop();

    const p = (xs: number[], q: number): string => percentile(xs, q).toFixed(1);
    const mb = (kb: number): string => (kb / 1024).toFixed(1);
    const row = (what: string, w: Wave, base: Wave): string =>
      `| ${what} | ${median(w.ttfm).toFixed(1)} ms | ${p(w.ttfm, 99)} ms | ${fmt(w.allMs)} ms | ${mb(w.rssKb)} MB | ${(median(w.ttfm) / median(base.ttfm)).toFixed(1)} | ${(w.rssKb / base.rssKb).toFixed(2)} |`;
    const md = `## Registration by template (issue 16)

Machine: ${machine()}. One \`cairn agent start\` process serves ${fmt(CALLERS)} distinct callers — ${fmt(CALLERS)} Unix-socket
connections whose kernel credentials carry ${fmt(CALLERS)} different uids (the root bench process switches its effective
uid/gid around each \`connect()\`, which is when the kernel records them; the callers share one pid and executable) — each
opening FetchX509SVID, 50 connecting at a time, every stream kept open until the agent's RSS is read. Baseline in the
same run: a fresh agent of the same build serving the same number of callers from ${fmt(CALLERS)} entries (\`unix:uid:N\`),
whose SVIDs it issued at sync before any caller came. The template run has one template
(\`spiffe://{td}/uid/{unix:uid}\`) and no entries: nothing is issued until a caller arrives, and a new caller's first answer
waits for its SVID (batched with the callers arriving meanwhile). CA: \`cairn ca start\` on PostgreSQL. Measured ${new Date().toISOString().slice(0, 10)}.

| what | TTFM median | TTFM p99 | all ${fmt(CALLERS)} served | agent RSS, ${fmt(CALLERS)} streams open | TTFM ratio to entries | RSS ratio to entries |
|---|---:|---:|---:|---:|---:|---:|
${row(`${fmt(CALLERS)} entries (baseline)`, entries, entries)}
${row('1 template, callers new to it (SVIDs issued on demand)', cold, entries)}
${row('1 template, the same callers again (identities held)', warm, entries)}

Agent RSS before any caller: ${mb(entryIdleRss)} MB holding ${fmt(CALLERS)} entries and their SVIDs, ${mb(templateIdleRss)} MB holding one template.
The template agent issued ${fmt(issued)} SVIDs, one per distinct uid (the CA rendered each ID itself).`;
    writeSection('templates', md);
    console.log(md);
  } finally {
    for (const c of children.reverse()) await c.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

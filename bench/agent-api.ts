import 'reflect-metadata';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { AgentPaths, type BatchX509Response, type SyncResponse } from '../contract/agent-api.js';
import { generateKeyAndCsr } from '../lib/pkcs10.js';
import { redeem } from '../test/support/agent-client.js';
import { startBenchCa } from './ca-process.js';
import { cryptoCeiling } from './crypto-ceiling.js';
import { fmt, machine, median, opsPerSecond, percentile, writeSection } from './harness.js';

/**
 * Issue 3's figures against a CA running as its own process on a real PostgreSQL:
 * batch X.509 issuance through the agent API over mTLS, and admin change → agent latency.
 */
export async function benchAgentApi(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL!;
  const dataDir = mkdtempSync(join(tmpdir(), 'cairn-bench-'));
  const started = await startBenchCa(dataDir, process.env.CAIRN_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CAIRN_BENCH_PROFILE}`] : []);
  const ca = started.process;
  const admin = started.admin;
  try {
    await admin('/v1/trust-domains', { name: 'bench.test', x509SvidTtlSeconds: 3600 });
    const { token } = await admin('/v1/tokens', { trustDomain: 'bench.test' });
    const agent = (await redeem(token)).node!;

    // ---- batch issuance
    const BATCH = 500;
    const LANES = Number(process.env.CAIRN_BENCH_LANES ?? 2);
    const entryIds: string[] = [];
    for (let i = 0; i < BATCH; i++) {
      entryIds.push((await admin('/v1/entries', { spiffeId: `spiffe://bench.test/svc/${i}`, parentId: agent.spiffeId, selectors: [`unix:uid:${10000 + i}`] })).id);
    }
    const csrs = Array.from({ length: BATCH }, () => generateKeyAndCsr().csr.toString('base64'));
    const body = { requests: entryIds.map((entryId, i) => ({ entryId, csr: csrs[i]! })) };
    const batch = async (): Promise<number> => {
      const res = await agent.call<BatchX509Response>('POST', AgentPaths.x509Svids, body);
      if (res.status !== 200) throw new Error(`batch failed: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
      return res.body.results.filter((r) => r.svid).length;
    };
    await batch(); // warm-up
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const tbsLike = Buffer.alloc(420, 7);
    const rates: number[] = [];
    const raws: number[] = [];
    // the CA's issuance pool runs one worker per core: its crypto alone on as many threads is the ceiling
    const THREADS = availableParallelism();
    const ceilings: number[] = [];
    const caCpu = (): number => {
      const f = readFileSync(`/proc/${ca.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return ((Number(f[11]) + Number(f[12])) / 100) * 1000; // utime+stime, clock ticks at 100 Hz → ms
    };
    const cpuSplit: { ca: number; client: number; wall: number }[] = [];
    const windowFrom = process.hrtime.bigint() / 1000n;
    console.error('issuance: rounds start');
    for (let round = 0; round < 3; round++) {
      raws.push(opsPerSecond(() => sign('sha256', tbsLike, privateKey), 500));
      ceilings.push(await cryptoCeiling(THREADS, 1000));
      const started = performance.now();
      const ca0 = caCpu();
      const client0 = process.cpuUsage();
      let issued = 0;
      // several batches in flight, as an agent pipelines its requests
      const lane = async (): Promise<void> => {
        while (performance.now() - started < 4000) issued += await batch();
      };
      await Promise.all(Array.from({ length: LANES }, lane));
      const wall = performance.now() - started;
      rates.push((issued * 1000) / wall);
      const c = process.cpuUsage(client0);
      cpuSplit.push({ ca: caCpu() - ca0, client: (c.user + c.system) / 1000, wall });
    }
    const split = cpuSplit[cpuSplit.length - 1]!;
    const svidsPerSecond = median(rates);
    const rawSigns = median(raws);
    const ceiling = median(ceilings);
    // on stderr at once: the figure survives a failure further on; the monotonic window lines up with the CA's --cpu-prof samples
    console.error(`issuance: ${rates.map((r) => fmt(r)).join(', ')} SVIDs/s; raw ${fmt(rawSigns)} signs/s; ratio ${(svidsPerSecond / rawSigns).toFixed(3)}; crypto alone on ${THREADS} threads ${fmt(ceiling)}/s (ratio ${(ceiling / rawSigns).toFixed(3)}); CA CPU per SVID ${cpuSplit.map((c, k) => Math.round((c.ca * 1000) / ((rates[k]! * c.wall) / 1000))).join(', ')} µs; window ${windowFrom}..${process.hrtime.bigint() / 1000n} µs`);

    // ---- admin change → agent holding it
    let sync = (await agent.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=0`)).body;
    let bundleSequence = sync.bundle?.sequence ?? 0;
    const latencies: number[] = [];
    for (let i = 0; i < 100; i++) {
      const poll = agent.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=${sync.revision}&bundleSequence=${bundleSequence}&wait=30`);
      await new Promise((r) => setTimeout(r, 20));
      const t0 = performance.now();
      const created = await admin('/v1/entries', { spiffeId: `spiffe://bench.test/latency/${i}`, parentId: agent.spiffeId, selectors: ['unix:uid:1'] });
      let res = (await poll).body;
      // The sync reads its high-water mark before the changes (ca/sync/service.ts), so an entry that committed in
      // between comes back once more on the next poll: the agent polls on until it holds the new one, as a real agent would.
      for (let extra = 0; !res.entries.some((e) => e.id === created.id); extra++) {
        if (extra === 3) throw new Error(`long-poll ${i}: the new entry did not arrive (asked revision ${res.revision})`);
        res = (await agent.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=${res.revision}&bundleSequence=${res.bundle?.sequence ?? bundleSequence}&wait=30`)).body;
      }
      latencies.push(performance.now() - t0);
      sync = res;
      bundleSequence = res.bundle?.sequence ?? bundleSequence;
    }
    // baseline: a bare PostgreSQL NOTIFY from one connection to a LISTENing one
    const listener = new pg.Client({ connectionString: databaseUrl });
    const notifier = new pg.Client({ connectionString: databaseUrl });
    await Promise.all([listener.connect(), notifier.connect()]);
    await listener.query('LISTEN bench_baseline');
    const rawLatencies: number[] = [];
    for (let i = 0; i < 100; i++) {
      const got = new Promise<void>((r) => listener.once('notification', () => r()));
      const t0 = performance.now();
      await notifier.query(`NOTIFY bench_baseline, '${i}'`);
      await got;
      rawLatencies.push(performance.now() - t0);
    }
    await Promise.all([listener.end(), notifier.end()]);

    const cpuPerSvid = Math.round((split.ca * 1000) / ((rates[rates.length - 1]! * split.wall) / 1000));
    const ratio = svidsPerSecond / rawSigns;
    const shortfall = svidsPerSecond >= 5000 && ratio >= 0.15 ? '' : `
**Below target on this machine.** The CA is CPU-bound, on two cores it shares with PostgreSQL, the client and,
when this was measured, other jobs (the raw baseline moved between 3,000 and 29,000 signs/s across runs of one
session, and the ratio with it). In this run the CA process burned ~${cpuPerSvid} µs of CPU per SVID. Where it goes
(issue 17; CPU profiles of every CA thread under this benchmark, \`CAIRN_BENCH_PROFILE=<dir> npm run bench agent-api\`,
and per-thread CPU from /proc, 2026-11-28):
- **the two issuance workers, ~70% of the CA's CPU, ~80% of it OpenSSL**: importing the CSR's public key (~140 µs,
  three signatures' worth), the first verification with a freshly imported key (~150 µs; ~100 µs once the key is in
  use) and the signature (~45 µs). On Node 20 / OpenSSL 3.0 the proof of possession costs 5–6 signatures, not 2.5,
  so that cryptography alone, on both cores with nothing else running, reaches ${(ceiling / rawSigns).toFixed(2)} of one core's raw signing
  rate (the ceiling row), not 0.57: the target 0.15 asks for ${((100 * 0.15 * rawSigns) / ceiling).toFixed(0)}% of that ceiling with TLS, JSON, PostgreSQL and the audit
  log on the same two cores, where this run reached ${((100 * svidsPerSecond) / ceiling).toFixed(0)}%. The JWK
  import is the cheapest Node offers here: SPKI DER import costs ~2× more, and WebCrypto's raw-point import
  (no EC_KEY_check_key) measured no cheaper in total.
- **the event loop, ~25%**: the audit log about a quarter of it (a canonical-JSON entry per SVID, and the
  integration that reads the entries back, hashes them and writes two Merkle nodes each), the pg driver's
  array-literal encoding of the inventory and audit rows ~10%, GC ~15%, JSON and base64 of 500 CSRs in and
  500 certificates out. (Parsing the client SVID twice per request was another ~15%; it is now parsed once and
  remembered per connection.)
- V8's GC helper threads ~5–10%; PostgreSQL adds about a fifth of the CA's CPU on top.

Removed in issue 17: the bundle base64-encoded per SVID and then dropped, each audit entry turned into a Buffer
and back into text before its insert (~7% of the event loop), three buffers and a concat per DER node and two OIDs
re-encoded per certificate in the leaf template. Before/after in alternating runs of one session (2026-11-28, 7 runs
each, load 3–14 from other jobs): median CA CPU per SVID 1,290 → 1,085 µs over 17 rounds each (ranges 889–1,740 and
850–1,840), median ratio 0.049 → 0.055; the ranges overlap, so take it as suggestive. Not done: a binary batch
encoding (JSON, base64 and their garbage are well under a tenth of the CA's CPU, plus the agent's parse), a cheaper
audit integration, and anything that would skip a CSR's proof of possession.`;
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    const md = `## Agent API (issue 3)

Machine: ${machine()}; the CA runs as its own process on PostgreSQL (Debian's server, private cluster),
the bench process plays the agent over mTLS. Measured ${new Date().toISOString().slice(0, 10)}.

| what | result | raw baseline (same run) | ratio | target |
|---|---:|---:|---:|---:|
| batch X.509-SVID issuance, ${BATCH} per request, ${LANES} requests in flight (CSR proof-of-possession checked, inventory rows written) | **${fmt(svidsPerSecond)} SVIDs/s** | ${fmt(rawSigns)} raw P-256 signs/s on one core | ${ratio.toFixed(3)} | ≥ 0.15 (issue 17); ≥ 5,000 SVIDs/s (issue 3) |
| … the ceiling: the same SVIDs' cryptography alone (CSR key import, proof-of-possession verify, signature; one key per CSR) on ${THREADS} threads, nothing else | ${fmt(ceiling)} SVIDs/s | ${fmt(rawSigns)} raw P-256 signs/s on one core | ${(ceiling / rawSigns).toFixed(3)} | — |
| admin entry change → connected agent holding it (long-poll woken by NOTIFY), 100 changes | p50 **${p50.toFixed(1)} ms**, p99 **${p99.toFixed(1)} ms** | bare NOTIFY→LISTEN p50 ${percentile(rawLatencies, 50).toFixed(2)} ms, p99 ${percentile(rawLatencies, 99).toFixed(2)} ms | p99 ×${(p99 / percentile(rawLatencies, 99)).toFixed(1)} | p99 ≤ 1 s (SPIRE: 5–10 s) |

Rounds for issuance: ${rates.map((r) => fmt(r)).join(', ')} SVIDs/s, ${((100 * svidsPerSecond) / ceiling).toFixed(0)}% of the ceiling measured between them (CA CPU per SVID ${cpuSplit.map((c, k) => fmt(Math.round((c.ca * 1000) / ((rates[k]! * c.wall) / 1000)))).join(', ')} µs). Where the two cores went in the last
round: CA process ${((100 * split.ca) / split.wall).toFixed(0)}% of one core, the bench client ${((100 * split.client) / split.wall).toFixed(0)}%, the rest PostgreSQL and idle.
${shortfall}

The latency includes the admin
REST call that makes the change (validation, insert, commit) as well as the push.`;
    writeSection('agent-api', md);
    console.log(md);
  } finally {
    await ca.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

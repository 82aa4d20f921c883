import 'reflect-metadata';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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
    const caCpu = (): number => processCpuMs(ca.child.pid!);
    const cpuSplit: { ca: number; client: number; pg: number | undefined; wall: number }[] = [];
    // What the CA recorded, to hold the count below to: every SVID it answers with is an inventory row.
    const counter = new pg.Client({ connectionString: databaseUrl });
    await counter.connect();
    const recorded = async (): Promise<number> => Number((await counter.query<{ n: string }>('SELECT count(*) AS n FROM issued_x509_svids')).rows[0]!.n);
    const windowFrom = process.hrtime.bigint() / 1000n;
    console.error('issuance: rounds start');
    for (let round = 0; round < 3; round++) {
      raws.push(opsPerSecond(() => sign('sha256', tbsLike, privateKey), 500));
      ceilings.push(await cryptoCeiling(THREADS, 1000));
      const started = performance.now();
      const ca0 = caCpu();
      const pg0 = postgresCpu();
      const client0 = process.cpuUsage();
      const rows0 = await recorded();
      let issued = 0;
      // several batches in flight, as an agent pipelines its requests
      const lane = async (): Promise<void> => {
        while (performance.now() - started < 4000) {
          // not `issued += await batch()`: that reads `issued` before the await, and the lanes overwrite each other's counts
          const n = await batch();
          issued += n;
        }
      };
      await Promise.all(Array.from({ length: LANES }, lane));
      const wall = performance.now() - started;
      const rows = (await recorded()) - rows0;
      if (rows !== issued) throw new Error(`the bench counted ${issued} SVIDs in this round, the CA recorded ${rows}`);
      rates.push((issued * 1000) / wall);
      const c = process.cpuUsage(client0);
      const pg1 = postgresCpu();
      cpuSplit.push({ ca: caCpu() - ca0, client: (c.user + c.system) / 1000, pg: pg0 === undefined || pg1 === undefined ? undefined : pg1 - pg0, wall });
    }
    await counter.end();
    const split = cpuSplit[cpuSplit.length - 1]!;
    const svidsPerSecond = median(rates);
    const rawSigns = median(raws);
    const ceiling = median(ceilings);
    // on stderr at once: the figure survives a failure further on; the monotonic window lines up with the CA's --cpu-prof samples
    console.error(`issuance: ${rates.map((r) => fmt(r)).join(', ')} SVIDs/s; raw ${fmt(rawSigns)} signs/s; ratio ${(svidsPerSecond / rawSigns).toFixed(3)}; crypto alone on ${THREADS} threads ${fmt(ceiling)}/s (ratio ${(ceiling / rawSigns).toFixed(3)}); CA CPU per SVID ${cpuSplit.map((c, k) => Math.round((c.ca * 1000) / ((rates[k]! * c.wall) / 1000))).join(', ')} µs; PostgreSQL ${cpuSplit.map((c, k) => (c.pg === undefined ? '?' : Math.round((c.pg * 1000) / ((rates[k]! * c.wall) / 1000)))).join(', ')} µs; window ${windowFrom}..${process.hrtime.bigint() / 1000n} µs`);

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

    const perSvid = (ms: number): number => Math.round((ms * 1000) / ((rates[rates.length - 1]! * split.wall) / 1000));
    const cpuPerSvid = perSvid(split.ca);
    const pgPerSvid = split.pg === undefined ? undefined : perSvid(split.pg);
    const clientPerSvid = perSvid(split.client);
    const ratio = svidsPerSecond / rawSigns;
    const shortfall = svidsPerSecond >= 5000 && ratio >= 0.15 ? '' : `
**Below target in this run.** At the target, ${fmt(Math.round(0.15 * rawSigns))} SVIDs/s on two cores leave ${fmt(Math.round(2e6 / (0.15 * rawSigns)))} µs of CPU per SVID
for everything on the machine; in this run's last round the CA process burned ~${cpuPerSvid} µs per SVID, PostgreSQL
${pgPerSvid === undefined ? 'an unmeasured share' : `~${pgPerSvid} µs`} and the client ~${clientPerSvid} µs. (The raw baseline itself moves between
runs and sessions, 3,000–37,000 signs/s on this machine, with other jobs; the ratio moves with it.)
`;
    const history = `
**How issuance got here (issue 17).** Until 2026-11-28 this benchmark reported about half the SVIDs it
received: each of its concurrent request lanes added to the shared \`issued\` with \`+= await batch()\`, which reads the
total before the await, so the lanes overwrote each other's counts (with 4 lanes, a quarter was reported, which read as "more in
flight makes it worse"). Each round now holds its count to the inventory rows the CA wrote in it and fails on any
difference, and a rule in \`test/architecture.test.ts\` refuses \`+= await\` anywhere. The figures recorded
before that day are low by the number of lanes, and their CPU per SVID high by as much; comparisons between them
(one count, one bug) still hold. Removed in issue 17: a CSR's proof of possession is checked through Node's own OpenSSL in a small
addon (\`ca/issuance/native/ecdsa.c\`, ~85 µs instead of ~215 µs through node:crypto, whose key import runs
OpenSSL 3's full key validation, a scalar multiplication that proves nothing on P-256); the bundle is no longer
base64-encoded per SVID and dropped; audit entries go to PostgreSQL as text; the leaf template no longer builds
three buffers per DER node or re-encodes two OIDs per certificate; a batch draws its serials' randomness once.
PostgreSQL's share is ~15 B-tree insertions per SVID: the inventory row (primary key and four indexes) and the
audit entry (inserted, then numbered by integration into six partial search indexes, plus two Merkle nodes).
`;
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    const md = `## Agent API (issue 3)

Machine: ${machine()}; the CA runs as its own process on PostgreSQL (Debian's server, private cluster),
the bench process plays the agent over mTLS. Measured ${new Date().toISOString().slice(0, 10)}.

| what | result | raw baseline (same run) | ratio | target |
|---|---:|---:|---:|---:|
| batch X.509-SVID issuance, ${BATCH} per request, ${LANES} requests in flight (CSR proof-of-possession checked, inventory rows written) | **${fmt(svidsPerSecond)} SVIDs/s** | ${fmt(rawSigns)} raw P-256 signs/s on one core | ${ratio.toFixed(3)} | ≥ 0.15 (issue 17); ≥ 5,000 SVIDs/s (issue 3) |
| … the ceiling: the same SVIDs' cryptography alone (the CA's proof-of-possession check, signature; one key per CSR) on ${THREADS} threads, nothing else | ${fmt(ceiling)} SVIDs/s | ${fmt(rawSigns)} raw P-256 signs/s on one core | ${(ceiling / rawSigns).toFixed(3)} | — |
| admin entry change → connected agent holding it (long-poll woken by NOTIFY), 100 changes | p50 **${p50.toFixed(1)} ms**, p99 **${p99.toFixed(1)} ms** | bare NOTIFY→LISTEN p50 ${percentile(rawLatencies, 50).toFixed(2)} ms, p99 ${percentile(rawLatencies, 99).toFixed(2)} ms | p99 ×${(p99 / percentile(rawLatencies, 99)).toFixed(1)} | p99 ≤ 1 s (SPIRE: 5–10 s) |

Rounds for issuance: ${rates.map((r) => fmt(r)).join(', ')} SVIDs/s, ${((100 * svidsPerSecond) / ceiling).toFixed(0)}% of the ceiling measured between them (CA CPU per SVID ${cpuSplit.map((c, k) => fmt(Math.round((c.ca * 1000) / ((rates[k]! * c.wall) / 1000)))).join(', ')} µs). Where the two cores went in the last
round: CA process ${((100 * split.ca) / split.wall).toFixed(0)}% of one core, the bench client ${((100 * split.client) / split.wall).toFixed(0)}%, ${split.pg === undefined ? 'the rest PostgreSQL and idle' : `PostgreSQL ${((100 * split.pg) / split.wall).toFixed(0)}% (${pgPerSvid} µs per SVID), the rest idle`}.
${shortfall}${history}
The latency includes the admin
REST call that makes the change (validation, insert, commit) as well as the push.`;
    writeSection('agent-api', md);
    console.log(md);
  } finally {
    await ca.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** utime+stime of a process, and of its reaped children (ms; clock ticks at 100 Hz). */
function processCpuMs(pid: number, withChildren = false): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0);
  return (ticks / 100) * 1000;
}

/**
 * The private cluster's CPU (scripts/postgres.sh exports PG_DIR): the postmaster, its live children
 * (the backends, the WAL writer, the checkpointer) and the children it has reaped. Undefined when
 * the cluster is not ours to find.
 */
function postgresCpu(): number | undefined {
  const dir = process.env.PG_DIR;
  if (!dir) return undefined;
  try {
    const postmaster = Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    let total = processCpuMs(postmaster, true);
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        if (Number(stat.split(') ')[1]!.split(' ')[1]) === postmaster) total += processCpuMs(Number(entry));
      } catch {
        // gone between the listing and the read
      }
    }
    return total;
  } catch {
    return undefined;
  }
}

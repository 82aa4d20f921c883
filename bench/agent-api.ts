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
    const windowFrom = process.hrtime.bigint() / 1000n;
    console.error('issuance: rounds start');
    for (let round = 0; round < 3; round++) {
      raws.push(opsPerSecond(() => sign('sha256', tbsLike, privateKey), 500));
      ceilings.push(await cryptoCeiling(THREADS, 1000));
      const started = performance.now();
      const ca0 = caCpu();
      const pg0 = postgresCpu();
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
      const pg1 = postgresCpu();
      cpuSplit.push({ ca: caCpu() - ca0, client: (c.user + c.system) / 1000, pg: pg0 === undefined || pg1 === undefined ? undefined : pg1 - pg0, wall });
    }
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
**Below target on this machine.** At the target, ${fmt(Math.round(0.15 * rawSigns))} SVIDs/s on two cores leave ${fmt(Math.round(2e6 / (0.15 * rawSigns)))} µs of CPU per SVID
for everything on the machine; in this run's last round the CA process burned ~${cpuPerSvid} µs per SVID, PostgreSQL
${pgPerSvid === undefined ? 'an unmeasured share' : `~${fmt(pgPerSvid)} µs`} and the client ~${clientPerSvid} µs, and the two cores were not full. (The raw baseline itself moves between
runs and sessions, 3,000–35,000 signs/s on this machine, with other jobs; the ratio moves with it.) Where it goes
(issue 17; CPU profiles of every CA thread under this benchmark, \`CAIRN_BENCH_PROFILE=<dir> npm run bench agent-api\`,
and CPU from /proc, 2026-11-28):
- **cryptography is no longer the bottleneck.** A CSR's proof of possession was 5–6 signatures' worth through
  node:crypto, whose every key import runs OpenSSL 3's full key validation (a scalar multiplication that proves
  nothing on P-256); the CA now checks it through Node's own OpenSSL in a small addon
  (\`ca/issuance/native/ecdsa.c\`, ~85 µs instead of ~215 µs). In alternating runs of one session (2026-11-28, two
  each) the ceiling row went from 0.25–0.33 to 0.39–0.57, the CA's CPU per SVID from 580–700 µs to 410–520 µs and the
  rate from 2,040–2,300 to 2,250–2,870 SVIDs/s. (The 1,160 µs recorded before came from a busier machine.) The
  issuance workers are now idle about two thirds of the time; of their busy time ~90% is that check and the signature.
- **the event loop is idle about half the time too**: each request signs, then writes its inventory and
  audit rows, then answers; with ${LANES} requests in flight the phases of one wait on the other's, and with
  PostgreSQL and the client about a fifth of the two cores stays idle. Its busy half: GC ~15%, socket writes to PostgreSQL and the client ~15%,
  the pg driver's array-literal encoding, canonical JSON and hashing for the audit log, fastify's JSON.
- **PostgreSQL** spends its share on ~15 B-tree insertions per SVID: the inventory row (primary key and four
  indexes) and the audit entry (inserted, then numbered by integration, which moves it into six partial search
  indexes, plus two Merkle nodes).
- **More requests in flight made it worse, not better**: with 4, CPU per SVID rose to about double in both the CA (800–1,300 µs)
  and PostgreSQL (350–620 µs) and the rate fell to 900–1,520/s (2026-11-28, \`CAIRN_BENCH_LANES=4\`); not explained yet.

Removed in issue 17: the bundle base64-encoded per SVID and then dropped, each audit entry turned into a Buffer
and back into text before its insert, three buffers and a concat per DER node and two OIDs re-encoded per
certificate in the leaf template, a random draw per serial (one per batch now), and the OpenSSL key validation
above. Not done: a binary batch encoding, a cheaper audit integration (or fewer audit indexes), overlapping a
request's signing with another's database work inside the CA, and anything that would skip a CSR's proof of possession.`;
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
round: CA process ${((100 * split.ca) / split.wall).toFixed(0)}% of one core, the bench client ${((100 * split.client) / split.wall).toFixed(0)}%, ${split.pg === undefined ? 'the rest PostgreSQL and idle' : `PostgreSQL ${((100 * split.pg) / split.wall).toFixed(0)}% (${fmt(Math.round((split.pg * 1000) / ((rates[rates.length - 1]! * split.wall) / 1000)))} µs per SVID), the rest idle`}.
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

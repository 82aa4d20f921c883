import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../lib/paths.js';
import { spawnCairn, type Spawned } from '../test/support/processes.js';
import { startBenchCa } from './ca-process.js';
import { fmt, machine, median, writeSection } from './harness.js';

/**
 * Issue 12's footprint figures: resident memory of the long-lived processes once idle, each
 * against a raw baseline process holding the same thing, measured in the same run.
 * - the node agent (`cairn agent start`, its own process) with 1,001 identities, as it starts
 *   itself, and with V8's default young generation forced back through NODE_OPTIONS;
 * - `cairn up` (CA on the embedded store + agent, one process) after a first start and a restart.
 */

const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mb = (kb: number): string => (kb / 1024).toFixed(1);

/** The median of a few RSS samples taken while the process idles. */
async function idleRss(pid: number, settleMs = 10_000, samples = 5): Promise<number> {
  await sleep(settleMs);
  const out: number[] = [];
  for (let i = 0; i < samples; i++) {
    out.push(rssKb(pid));
    await sleep(1000);
  }
  return median(out);
}

/** A raw baseline process (bench/raw-holders.mjs), once it says it holds its data. */
async function rawHolder(args: string[], children: ChildProcess[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(packageRoot(), 'bench/raw-holders.mjs'), ...args], { stdio: ['ignore', 'pipe', 'inherit'], cwd: packageRoot() });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`raw baseline ${args[0]} exited with ${code}`)));
  });
  return child;
}

const cmdline = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

export async function benchFootprint(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-fp-'));
  const children: (Spawned | ChildProcess)[] = [];
  const raws: ChildProcess[] = [];
  try {
    // ---- the agent with 1,001 identities (its CA on PostgreSQL, as in the Workload API benchmark)
    const ca = await startBenchCa(join(dir, 'ca'));
    children.push(ca.process);
    const TD = 'fpbench.test';
    const IDENTITIES = 1000;
    await ca.admin('/v1/trust-domains', { name: TD, x509SvidTtlSeconds: 3600 });
    const { token, spiffeId: agentId } = await ca.admin('/v1/tokens', { trustDomain: TD });
    for (let i = 0; i < IDENTITIES; i += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, j) => ca.admin('/v1/entries', { spiffeId: `spiffe://${TD}/svc/${i + j}`, parentId: agentId, selectors: [`unix:uid:${20000 + i + j}`] })));
    }
    await ca.admin('/v1/entries', { spiffeId: `spiffe://${TD}/bench`, parentId: agentId, selectors: [`unix:uid:${process.getuid!()}`] });
    const issuedSince = async (after: number): Promise<number> => {
      let issued = 0;
      let pageToken = '';
      do {
        const page = await ca.admin(`/v1/x509-svids?spiffeIdPrefix=${encodeURIComponent(`spiffe://${TD}/`)}&pageSize=500${pageToken ? `&pageToken=${pageToken}` : ''}`);
        issued += (page.svids as { notBefore: string }[]).filter((s) => Date.parse(s.notBefore) + 10_000 >= after).length;
        pageToken = page.nextPageToken ?? '';
      } while (pageToken);
      return issued;
    };
    /** Starts an agent on the shared data dir (attests once, then reuses its SVID) and waits until it issued all its SVIDs. */
    const agentRss = async (name: string, env: Record<string, string | undefined>, joinToken?: string): Promise<{ rss: number; argv: string[] }> => {
      const started = Date.now() - 1000;
      const agent = spawnCairn(['agent', 'start', '--socket', join(dir, `${name}.sock`), ...(joinToken ? ['--join-token', joinToken] : [])], { CAIRN_DATA_DIR: join(dir, 'node'), CAIRN_LOG_LEVEL: 'warn', NODE_OPTIONS: undefined, ...env });
      children.push(agent);
      await agent.waitFor(/serving the Workload API/, 60_000);
      while ((await issuedSince(started)) < IDENTITIES + 1) await sleep(500);
      const rss = await idleRss(agent.child.pid!);
      const argv = cmdline(agent.child.pid!);
      await agent.stop();
      return { rss, argv };
    };
    const lean = await agentRss('lean', {}, token);
    const wide = await agentRss('wide', { NODE_OPTIONS: '--max-semi-space-size=16' });
    const keys = await rawHolder(['keys', String(IDENTITIES + 1)], raws);
    const rawKeys = await idleRss(keys.pid!);
    keys.kill();
    await ca.process.stop();

    // ---- cairn up on the embedded store: a first start (initdb), then a restart on the same data
    const upDir = join(dir, 'up');
    const upRss = async (): Promise<number> => {
      const up = spawnCairn(['up', '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'], { CAIRN_DATA_DIR: upDir, DATABASE_URL: undefined, CAIRN_DATABASE_URL: undefined, CAIRN_LOG_LEVEL: 'warn', NODE_OPTIONS: undefined });
      children.push(up);
      await up.waitFor(/Press Ctrl-C to stop/, 180_000);
      const rss = await idleRss(up.child.pid!);
      await up.stop();
      return rss;
    };
    const upFirst = await upRss();
    const upAgain = await upRss();
    cpSync(join(upDir, 'pgdata'), join(dir, 'pgdata-copy'), { recursive: true });
    const pglite = await rawHolder(['pglite', join(dir, 'pgdata-copy')], raws);
    const rawPglite = await idleRss(pglite.pid!);
    pglite.kill();
    const embedded = await rawHolder(['embedded', join(dir, 'pgdata-copy')], raws);
    const rawEmbedded = await idleRss(embedded.pid!);
    embedded.kill();
    const bare = await rawHolder(['keys', '0'], raws);
    const rawBare = await idleRss(bare.pid!, 3000);
    bare.kill();

    const leanFlags = lean.argv.filter((a) => a.startsWith('--max-semi-space-size'));
    const md = `## Footprint (issue 12)

Machine: ${machine()}. Resident set size (VmRSS) of each process once idle: the median of 5 samples, 1 s apart, taken 10 s
after it finished starting (the agent: after all its SVIDs were issued). Each raw baseline is its own idle \`node\` process
holding the same thing, measured in the same run. Measured ${new Date().toISOString().slice(0, 10)}.

| what | Cairn | raw baseline (same run) | ratio | target |
|---|---:|---:|---:|---:|
| agent (\`cairn agent start\`) with ${fmt(IDENTITIES + 1)} identities, as it starts itself (re-executed with \`${leanFlags.join(' ') || 'no flag: re-exec failed'}\`) | **${mb(lean.rss)} MB** | ${mb(rawKeys)} MB: bare \`node\` holding ${fmt(IDENTITIES + 1)} P-256 keys and 800-byte chains | ×${(lean.rss / rawKeys).toFixed(2)} | ≤ 80 MB |
| the same agent with \`NODE_OPTIONS=--max-semi-space-size=16\` (V8's default young generation; a user's NODE_OPTIONS wins) | ${mb(wide.rss)} MB | ${mb(rawKeys)} MB | ×${(wide.rss / rawKeys).toFixed(2)} | — |
| \`cairn up\` (CA on the embedded store + agent, one process), after its first start (initdb) | **${mb(upFirst)} MB** | ${mb(rawPglite)} MB: bare \`node\` with PGlite (its defaults) open on the same data | ×${(upFirst / rawPglite).toFixed(2)} | — |
| \`cairn up\` restarted on the same data | **${mb(upAgain)} MB** | ${mb(rawPglite)} MB | ×${(upAgain / rawPglite).toFixed(2)} | — |
| the same, against PGlite opened as Cairn opens it (\`ca/db/embedded.ts\`: its settings, nothing else of Cairn) | ${mb(upAgain)} MB | ${mb(rawEmbedded)} MB | ×${(upAgain / rawEmbedded).toFixed(2)} | — |
| bare \`node\` process, idle | ${mb(rawBare)} MB | — | — | — |

Where \`cairn up\`'s memory went before issue 12 (~484 MB idle) and what changed: PostgreSQL's 128 MB buffer pool,
allocated and touched inside PGlite's WASM heap at start (now \`shared_buffers=16MB\`, \`max_connections=10\`); V8's
optimising tier for PGlite's WASM (~40 MB of code; now its baseline compiler only, which used less CPU where we
measured it: ~12 s instead of ~16 s for a first start, no more for thousands of the CA's queries); the issuance worker pool, one V8 isolate per core from the first second (now started by the first batch
large enough to use it and stopped after a minute without one); the ~300 MB tar image of a new database, garbage left
for V8 to find some day (now collected once the database is open); and V8's 2 × 16 MB young generation, which stays
committed after a burst (\`cairn up\` and \`cairn agent start\` restart themselves in place with
\`--max-semi-space-size=1\` unless NODE_OPTIONS or node's command line sets it). Most of what is left is PGlite
itself: the last baseline is PostgreSQL in WASM as Cairn configures it, with nothing else of Cairn loaded; the rest
(the CA's two HTTPS/HTTP servers, the agent, their libraries and data) is the difference. The standalone agent
also stopped loading TypeBox, the CA's schema library (~7 MB resident for it): it imports only route paths from
\`contract/paths.ts\`.`;
    writeSection('footprint', md);
    console.log(md);
  } finally {
    for (const r of raws) r.kill();
    for (const c of children.reverse()) {
      if ('stop' in c) await c.stop();
      else c.kill();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

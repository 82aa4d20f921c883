import 'reflect-metadata';
import { fork } from 'node:child_process';
import { execSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { getHeapStatistics } from 'node:v8';
import pg from 'pg';
import { packageRoot } from '../../lib/paths.js';
import { writeSection } from '../harness.js';
import {
  bareFanout, bareNotify, dbFootprint, fleetWideAlias, fleetWideEntry, freshAgent, oneAgentChanges, type Context, type FanoutResult,
} from './measure.js';
import { cpuMsOf, LagProbe, PgSampler, procSample, type ProcSample } from './observe.js';
import { POOL_SELECTOR, SERVER_ID } from './protocol.js';
import { renderReport, type FleetResults, type GrowthStep } from './report.js';
import { APP_PREFIX, createFleetState, startReplicas } from './setup.js';
import { Fleet } from './workers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface FleetOptions {
  readonly agents: number;
  readonly entries: number;
  readonly workers: number;
  readonly probes: number;
  readonly idleSeconds: number;
  readonly steps: number[];
  readonly attestConcurrency: number;
  readonly adminConcurrency: number;
  readonly freshEntries: number;
  readonly caNodeArgs: string[];
}

export function fleetOptions(argv: readonly string[]): FleetOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      agents: { type: 'string', default: process.env.CAIRN_FLEET_AGENTS ?? '10000' },
      entries: { type: 'string', default: process.env.CAIRN_FLEET_ENTRIES ?? '100000' },
      workers: { type: 'string' },
      probes: { type: 'string', default: '200' },
      'idle-seconds': { type: 'string', default: '40' },
      steps: { type: 'string', default: '0.25,0.5,1' },
      'attest-concurrency': { type: 'string', default: '8' },
      'admin-concurrency': { type: 'string', default: '16' },
      'fresh-entries': { type: 'string', default: '1000' },
      'ca-node-options': { type: 'string', default: '' },
    },
    strict: true,
  });
  const int = (name: string, v: string | undefined, min = 1): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`error: --${name} must be an integer ≥ ${min}, got ${v}`);
    return n;
  };
  const agents = int('agents', values.agents);
  const entries = int('entries', values.entries, 0);
  const steps = [...new Set(values.steps!.split(',').map((f) => Math.max(1, Math.round(Number(f) * agents))).filter((n) => n <= agents))].sort((a, b) => a - b);
  if (steps[steps.length - 1] !== agents) steps.push(agents);
  return {
    agents,
    entries,
    workers: values.workers ? int('workers', values.workers) : Math.max(1, Math.ceil(agents / 2500)),
    probes: int('probes', values.probes),
    idleSeconds: int('idle-seconds', values['idle-seconds']),
    steps,
    attestConcurrency: int('attest-concurrency', values['attest-concurrency']),
    adminConcurrency: int('admin-concurrency', values['admin-concurrency']),
    freshEntries: int('fresh-entries', values['fresh-entries']),
    caNodeArgs: values['ca-node-options']!.split(' ').filter(Boolean),
  };
}

/** SIGUSR2 makes a replica started with --heapsnapshot-signal write a snapshot; waits until the file stops growing. */
async function heapSnapshot(pid: number, dir: string): Promise<void> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  let size = -1;
  for (;;) {
    await sleep(2000);
    const file = readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    if (!file) continue;
    const now = statSync(join(dir, file)).size;
    if (now === size) return console.error(`   heap snapshot of replica A: ${join(dir, file)}`);
    size = now;
  }
}

const fdLimit = (): string => execSync('ulimit -n', { shell: '/bin/bash' }).toString().trim();

/**
 * Issue 17's fleet: two CA replicas on one PostgreSQL, `agents` simulated agents in a few worker
 * processes (real join tokens, real mTLS, the agent's own client), `entries` entries; figures at each
 * growth step, then the full set at the final size, then the same fleet against a bare TLS server.
 */
export async function benchFleet(argv: readonly string[]): Promise<void> {
  const o = fleetOptions(argv);
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) throw new Error('this benchmark needs DATABASE_URL (npm run bench starts a private PostgreSQL)');
  const started = performance.now();
  const load0 = loadavg()[0]!;
  console.error(`== fleet: ${o.agents} agents, ${o.entries} entries, ${o.workers} agent processes, ulimit -n ${fdLimit()}, load ${load0.toFixed(1)}`);

  // CAIRN_FLEET_HEAP_SNAPSHOT=DIR: a heap snapshot of replica A once the fleet idles (what an agent costs).
  const snapshotDir = process.env.CAIRN_FLEET_HEAP_SNAPSHOT;
  const replicas = await startReplicas([...o.caNodeArgs, ...(snapshotDir ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapshotDir}`] : [])]);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  let fleet: Fleet | undefined;
  try {
    const pids = replicas.all.map((r) => r.process.child.pid!);
    const ca = (): ProcSample[] => pids.map(procSample);
    const setup = await createFleetState(replicas, o.agents, o.entries, o.adminConcurrency);
    // The CAs' own idle cost (housekeeping, the pool) over the same window, to subtract from the fleet's.
    console.error(`== fleet: the CAs idle without agents for ${o.idleSeconds} s`);
    await sleep(5000);
    const base0 = { ca: ca(), t: performance.now() };
    await sleep(o.idleSeconds * 1000);
    const base1 = { ca: ca(), t: performance.now() };
    const beforeFleet = base1.ca;

    fleet = new Fleet(o.workers);
    const ctx: Context = { replicas, fleet, db };
    const growth: GrowthStep[] = [];
    let connected = 0;
    /** Join tokens handed to agents so far (those whose attestation failed included). */
    let ticketsUsed = 0;
    let round = 0;
    const fanouts: FanoutResult[] = [];
    for (const target of o.steps) {
      console.error(`== fleet: growing to ${target} agents`);
      const t0 = performance.now();
      const lag = new LagProbe(replicas.all.map((r) => r.httpUrl));
      lag.start(100);
      const cpu0 = pids.map((p) => procSample(p).cpuMs);
      const agentCpu0 = (await fleet.status()).cpuMs;
      await fleet.attest(setup.tickets.slice(ticketsUsed, target), o.attestConcurrency);
      ticketsUsed = target;
      const formed = await fleet.until(`${target} agents attested and long-polling`, (s) => s.polling + s.attestFailures >= target, 1_800_000);
      const joinMs = performance.now() - t0;
      const joinCpuMs = pids.reduce((n, p, i) => n + procSample(p).cpuMs - cpu0[i]!, 0);
      const joinAgentCpuMs = formed.cpuMs - agentCpu0;
      const joinLag = await lag.stop();
      // An agent whose attestation failed is not in the fleet: waiting for it would wait out every timeout.
      const added = formed.attested - connected;
      connected = formed.attested;
      console.error(`   ${added} agents joined in ${(joinMs / 1000).toFixed(1)} s (attest failures ${formed.attestFailures}; CPU per agent: CAs ${(joinCpuMs / added).toFixed(1)} ms, agents ${(joinAgentCpuMs / added).toFixed(1)} ms); CA /healthz p99 ${joinLag.p99.toFixed(0)} ms while joining`);
      await sleep(2000);
      const idleLag = new LagProbe(replicas.all.map((r) => r.httpUrl));
      idleLag.start(100);
      await sleep(3000);
      const quiet = await idleLag.stop();
      const caAt = ca();
      const fan = await fleetWideEntry(ctx, connected, ++round);
      fanouts.push(fan);
      console.error(`   fleet-wide entry: last agent after ${fan.lastMs.toFixed(0)} ms (${fan.reached}/${connected}), settled ${fan.settledMs.toFixed(0)} ms, /healthz p99 ${fan.lag.p99.toFixed(0)} ms`);
      const final = target === o.agents;
      const one = await oneAgentChanges(ctx, connected, final ? o.probes : Math.min(30, o.probes));
      console.error(`   one agent's entry: p50 ${one.latency.p50.toFixed(1)} ms, p99 ${one.latency.p99.toFixed(1)} ms (${one.latency.n} changes, ${one.missed} missed)`);
      growth.push({ agents: connected, joinMs, joinCpuMs, joinAgentCpuMs, joinLag, quietLag: quiet, ca: caAt, fanout: fan, one, workers: await fleet.status() });
    }

    console.error('== fleet: at full size');
    const notify = await bareNotify(databaseUrl);
    for (let i = 0; i < 2; i++) {
      const fan = await fleetWideEntry(ctx, connected, ++round);
      fanouts.push(fan);
      console.error(`   fleet-wide entry: last agent after ${fan.lastMs.toFixed(0)} ms, settled ${fan.settledMs.toFixed(0)} ms`);
    }
    const alias = await fleetWideAlias(ctx, connected, SERVER_ID, POOL_SELECTOR);
    console.error(`   new node alias (every agent resyncs completely): last agent after ${alias.lastMs.toFixed(0)} ms (${alias.reached}/${connected}), settled ${alias.settledMs.toFixed(0)} ms`);

    console.error(`== fleet: idle for ${o.idleSeconds} s`);
    await sleep(3000);
    const pgs = new PgSampler(db, APP_PREFIX);
    const backends = (await pgs.sample()).backendPids;
    const s0 = await fleet.status();
    const idle0 = { ca: ca(), pg: cpuMsOf(backends), workers: s0.cpuMs, answers: s0.answers, t: performance.now() };
    pgs.start(500);
    await sleep(o.idleSeconds * 1000);
    pgs.stop();
    const activity = await pgs.sample();
    const s1 = await fleet.status();
    const idle1 = { ca: ca(), pg: cpuMsOf(backends), workers: s1.cpuMs, answers: s1.answers, t: performance.now() };
    const idleLag = new LagProbe(replicas.all.map((r) => r.httpUrl));
    idleLag.start(100);
    await sleep(5000);
    const idleLagDist = await idleLag.stop();
    if (snapshotDir) await heapSnapshot(pids[0]!, snapshotDir);
    const footprint = await dbFootprint(db);

    console.error(`== fleet: a fresh agent with ${o.freshEntries} entries`);
    const fresh = await freshAgent(ctx, databaseUrl, o.freshEntries, o.adminConcurrency);
    console.error(`   synced in ${fresh.syncedMs.toFixed(0)} ms (attest ${fresh.attestMs.toFixed(0)} ms); SVIDs ${fresh.svidsMs.toFixed(0)} ms`);

    const fleetEnd = await fleet.status();
    console.error('== fleet: raw baseline, the same agents against a bare TLS server');
    const bare = fork(join(packageRoot(), 'bench', 'fleet', 'bare-server.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const bareResult = await (async () => {
      const ready = await new Promise<{ url: string; cert: string }>((resolve) => bare.once('message', resolve as (m: unknown) => void));
      await sleep(500);
      const bare0 = procSample(bare.pid!);
      await fleet!.retarget(ready.url, ready.cert, o.attestConcurrency);
      await fleet!.until('agents long-polling the bare server', (s) => s.polling >= connected, 600_000);
      await sleep(3000);
      const c0 = procSample(bare.pid!);
      const t0 = performance.now();
      await sleep(o.idleSeconds * 1000);
      const c1 = procSample(bare.pid!);
      const idleCpuMs = c1.cpuMs - c0.cpuMs;
      const idleWallMs = performance.now() - t0;
      const fans: FanoutResult[] = [];
      for (let r = 1; r <= 3; r++) {
        fans.push(
          await bareFanout(ctx, connected, r, bare.pid!, async () => {
            bare.send({ type: 'fanout' });
          }),
        );
        console.error(`   bare fan-out: last agent after ${fans[fans.length - 1]!.lastMs.toFixed(0)} ms`);
      }
      return { before: bare0, held: c1, idleCpuMs, idleWallMs, fanouts: fans };
    })().finally(() => bare.kill());

    const results: FleetResults = {
      options: o,
      fdLimit: fdLimit(),
      heapLimitMb: Math.round(getHeapStatistics().heap_size_limit / 1048576),
      loadBefore: load0,
      loadAfter: loadavg()[0]!,
      totalSeconds: (performance.now() - started) / 1000,
      setup,
      beforeFleet,
      growth,
      fanouts,
      alias,
      notify,
      baseIdle: { before: base0, after: base1 },
      idle: { before: idle0, after: idle1, activity, maxBusy: pgs.maxBusy, maxTotal: pgs.maxTotal, busySamples: pgs.busySamples, samples: pgs.samples, lag: idleLagDist },
      footprint,
      fresh,
      bare: bareResult,
      adminRefused: replicas.refused.count,
      fleetEnd,
    };
    const md = renderReport(results);
    writeSection('fleet', md);
    console.log(md);
  } finally {
    await fleet?.stop();
    await db.end().catch(() => undefined);
    await replicas.stop();
  }
}

import pg from 'pg';
import type { SyncResponse } from '../../contract/agent-api.js';
import { systemClock } from '../../lib/clock.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { CaClient, chainPemOf } from '../../node-agent/ca-client.js';
import { percentile } from '../harness.js';
import { LagProbe, PgSampler, procSample } from './observe.js';
import { agentId, nowMs, POOL_ALIAS, TRUST_DOMAIN } from './protocol.js';
import { APP_PREFIX, inParallel, type Replicas } from './setup.js';
import type { Fleet } from './workers.js';

export interface Distribution {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly n: number;
}

export const distribution = (xs: readonly number[]): Distribution =>
  xs.length === 0 ? { p50: NaN, p99: NaN, max: NaN, n: 0 } : { p50: percentile([...xs], 50), p99: percentile([...xs], 99), max: Math.max(...xs), n: xs.length };

export interface Context {
  readonly replicas: Replicas;
  readonly fleet: Fleet;
  readonly db: pg.Client;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let probeSeq = 0;

export interface OneAgentResult {
  readonly latency: Distribution;
  readonly adminCall: Distribution;
  readonly missed: number;
}

/** An entry created for one random connected agent → that agent holds it; sequential, with small random gaps. */
export async function oneAgentChanges(ctx: Context, connected: number, samples: number): Promise<OneAgentResult> {
  const latencies: number[] = [];
  const admin: number[] = [];
  let missed = 0;
  for (let i = 0; i < samples; i++) {
    const agent = Math.floor(Math.random() * connected);
    const spiffeId = `spiffe://${TRUST_DOMAIN}/probe/one/${++probeSeq}`;
    const arrived = ctx.fleet.waitForProbe(spiffeId, 1, 30_000);
    const t0 = nowMs();
    await ctx.replicas.admin(i, '/v1/entries', { spiffeId, parentId: agentId(agent), selectors: ['unix:uid:6000'] });
    admin.push(nowMs() - t0);
    const t = (await arrived).get(agent);
    if (t === undefined) missed++;
    latencies.push(t === undefined ? 30_000 : t - t0);
    await sleep(10 + Math.random() * 40);
  }
  return { latency: distribution(latencies), adminCall: distribution(admin), missed };
}

export interface FanoutResult {
  /** Trigger → the last agent holds the change. */
  readonly lastMs: number;
  readonly perAgent: Distribution;
  readonly reached: number;
  /** Trigger → every agent holds a long-poll again (the CA is idle again). */
  readonly settledMs: number;
  readonly lag: Distribution;
  readonly pgBusyMax: number;
  /** CPU of the server processes (the replicas, or the bare server) and of the agent processes, trigger → settled. */
  readonly serverCpuMs: number;
  readonly agentCpuMs: number;
}

async function observeFanout(ctx: Context, connected: number, servers: readonly number[], trigger: () => Promise<void>, arrivals: (t0: number) => Promise<Map<number, number>>): Promise<FanoutResult> {
  const lag = new LagProbe(ctx.replicas.all.map((r) => r.httpUrl));
  const pgs = new PgSampler(ctx.db, APP_PREFIX);
  const serverCpu = (): number => servers.reduce((n, pid) => n + procSample(pid).cpuMs, 0);
  const agentCpu0 = (await ctx.fleet.status()).cpuMs;
  const serverCpu0 = serverCpu();
  lag.start(50);
  pgs.start(100);
  const t0 = nowMs();
  const arrived = arrivals(t0);
  await trigger();
  const times = [...(await arrived).values()].map((t) => t - t0);
  await ctx.fleet.until('fleet re-polling after the change', (s) => s.polling >= connected, 300_000, 100).catch(() => undefined);
  const settledMs = nowMs() - t0;
  const serverCpuMs = serverCpu() - serverCpu0;
  const agentCpuMs = (await ctx.fleet.status()).cpuMs - agentCpu0;
  pgs.stop();
  const lagDist = await lag.stop();
  return {
    lastMs: times.length ? Math.max(...times) : NaN,
    perAgent: distribution(times),
    reached: times.length,
    settledMs,
    lag: lagDist,
    pgBusyMax: Object.values(pgs.maxBusy).reduce((n, v) => n + v, 0),
    serverCpuMs,
    agentCpuMs,
  };
}

const replicaPids = (ctx: Context): number[] => ctx.replicas.all.map((r) => r.process.child.pid!);

/** An entry under the node alias every agent belongs to: every connected agent must receive it. */
export function fleetWideEntry(ctx: Context, connected: number, round: number): Promise<FanoutResult> {
  const spiffeId = `spiffe://${TRUST_DOMAIN}/probe/all/${round}`;
  return observeFanout(
    ctx,
    connected,
    replicaPids(ctx),
    async () => {
      await ctx.replicas.admin(round, '/v1/entries', { spiffeId, parentId: POOL_ALIAS, selectors: ['unix:uid:5000'] });
    },
    () => ctx.fleet.waitForProbe(spiffeId, connected, 300_000),
  );
}

/** A second node alias matching every agent: every agent's parents change, so each takes its complete set again. */
export function fleetWideAlias(ctx: Context, connected: number, serverId: string, selector: string): Promise<FanoutResult> {
  return observeFanout(
    ctx,
    connected,
    replicaPids(ctx),
    async () => {
      await ctx.replicas.admin(1, '/v1/entries', { spiffeId: `${POOL_ALIAS}-2`, parentId: serverId, selectors: [selector], allowUnknownSelectorTypes: true });
    },
    (t0) => ctx.fleet.waitForFulls((f) => f.parents === 3, connected, t0, 300_000),
  );
}

/** The same fan-out against the bare TLS server: every held poll answered at once with one entry. */
export function bareFanout(ctx: Context, connected: number, round: number, barePid: number, fanout: () => Promise<void>): Promise<FanoutResult> {
  return observeFanout(ctx, connected, [barePid], fanout, () => ctx.fleet.waitForProbe(`spiffe://${TRUST_DOMAIN}/probe/bare/${round}`, connected, 300_000));
}

/** A bare PostgreSQL NOTIFY from one connection to a LISTENing one: the floor under any push. */
export async function bareNotify(databaseUrl: string, samples = 100): Promise<Distribution> {
  const listener = new pg.Client({ connectionString: databaseUrl });
  const notifier = new pg.Client({ connectionString: databaseUrl });
  await Promise.all([listener.connect(), notifier.connect()]);
  await listener.query('LISTEN bench_fleet_baseline');
  const out: number[] = [];
  for (let i = 0; i < samples; i++) {
    const got = new Promise<void>((r) => listener.once('notification', () => r()));
    const t0 = performance.now();
    await notifier.query(`NOTIFY bench_fleet_baseline, '${i}'`);
    await got;
    out.push(performance.now() - t0);
  }
  await Promise.all([listener.end(), notifier.end()]);
  return distribution(out);
}

export interface FreshAgentResult {
  readonly entries: number;
  readonly createMs: number;
  /** New key, token redemption, first (full) sync holding all entries. */
  readonly syncedMs: number;
  readonly attestMs: number;
  readonly responseBytes: number;
  /** Then the workload SVIDs as the agent gets them: keys + CSRs generated locally, batches of 500. */
  readonly svidsMs: number;
  readonly keygenMs: number;
  /** Raw baseline: a new PostgreSQL connection reading the same rows. */
  readonly bareReadMs: number;
}

/** A fresh agent whose 1,000 entries exist before it starts: time until it holds them all (and their SVIDs). */
export async function freshAgent(ctx: Context, databaseUrl: string, entries: number, concurrency: number): Promise<FreshAgentResult> {
  const id = `spiffe://${TRUST_DOMAIN}/agent/fresh`;
  const t0 = performance.now();
  await inParallel(Array.from({ length: entries }, (_, k) => k), concurrency, async (k) => {
    await ctx.replicas.admin(k, '/v1/entries', { spiffeId: `spiffe://${TRUST_DOMAIN}/fresh/${k}`, parentId: id, selectors: [`unix:uid:${20000 + k}`] });
  });
  const createMs = performance.now() - t0;
  const { token } = await ctx.replicas.admin(0, '/v1/tokens', { trustDomain: TRUST_DOMAIN, agentId: id });

  const start = performance.now();
  const key = generateKeyAndCsr();
  const { svid, caUrl, authorityPem } = await CaClient.attest(token, key.csr.toString('base64'), { clock: systemClock, deadlineMs: 0 });
  const attestMs = performance.now() - start;
  const client = new CaClient({ caUrl, authorityPem, chainPem: chainPemOf(svid), keyPem: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() });
  let res: SyncResponse;
  try {
    res = await client.sync(0, 0, 0);
    const syncedMs = performance.now() - start;
    if (res.entries.length !== entries) throw new Error(`the fresh agent got ${res.entries.length} entries, expected ${entries}`);
    let keygenMs = 0;
    const s0 = performance.now();
    for (let i = 0; i < res.entries.length; i += 500) {
      const k0 = performance.now();
      const batch = res.entries.slice(i, i + 500).map((e) => ({ entryId: e.id, csr: generateKeyAndCsr().csr.toString('base64') }));
      keygenMs += performance.now() - k0;
      const issued = await client.issue(batch);
      const failed = issued.results.filter((r) => !r.svid);
      if (failed.length) throw new Error(`${failed.length} SVIDs refused: ${failed[0]!.error?.code}`);
    }
    const svidsMs = performance.now() - s0;

    const bare = new pg.Client({ connectionString: databaseUrl });
    const b0 = performance.now();
    await bare.connect();
    const rows = await bare.query('SELECT * FROM registration_entries WHERE parent_id = $1', [id]);
    const bareReadMs = performance.now() - b0;
    await bare.end();
    if (rows.rowCount !== entries) throw new Error('bare read disagrees');
    return { entries, createMs, syncedMs, attestMs, responseBytes: Buffer.byteLength(JSON.stringify(res)), svidsMs, keygenMs, bareReadMs };
  } finally {
    client.close();
  }
}

export interface DbFootprint {
  readonly entries: number;
  readonly entryBytes: number;
  readonly entryHeapBytes: number;
  readonly entryIndexBytes: number;
  readonly nodes: number;
  readonly nodeBytes: number;
  readonly svids: number;
  readonly svidBytes: number;
  readonly tokens: number;
  readonly tokenBytes: number;
}

export async function dbFootprint(db: pg.Client): Promise<DbFootprint> {
  await db.query('VACUUM ANALYZE registration_entries, attested_nodes, issued_x509_svids, one_time_tokens');
  const r = (
    await db.query<Record<string, string>>(`SELECT
      (SELECT count(*) FROM registration_entries) AS entries, pg_total_relation_size('registration_entries') AS entry_bytes,
      pg_relation_size('registration_entries') AS entry_heap, pg_indexes_size('registration_entries') AS entry_idx,
      (SELECT count(*) FROM attested_nodes) AS nodes, pg_total_relation_size('attested_nodes') AS node_bytes,
      (SELECT count(*) FROM issued_x509_svids) AS svids, pg_total_relation_size('issued_x509_svids') AS svid_bytes,
      (SELECT count(*) FROM one_time_tokens) AS tokens, pg_total_relation_size('one_time_tokens') AS token_bytes`)
  ).rows[0]!;
  const n = (k: string): number => Number(r[k]);
  return {
    entries: n('entries'), entryBytes: n('entry_bytes'), entryHeapBytes: n('entry_heap'), entryIndexBytes: n('entry_idx'),
    nodes: n('nodes'), nodeBytes: n('node_bytes'), svids: n('svids'), svidBytes: n('svid_bytes'), tokens: n('tokens'), tokenBytes: n('token_bytes'),
  };
}

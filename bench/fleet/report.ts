import { MAX_ENTRY_BATCH } from '../../contract/admin-api.js';
import { fmt, machine, median } from '../harness.js';
import type { FleetOptions } from './fleet.js';
import type { DbFootprint, Distribution, FanoutResult, FreshAgentResult, OneAgentResult } from './measure.js';
import { cpuMsBetween, type PgActivity, type ProcSample } from './observe.js';
import type { SetupResult } from './setup.js';
import type { FleetStatus } from './workers.js';

export interface GrowthStep {
  readonly agents: number;
  readonly joinMs: number;
  /** CPU the replicas / the agent processes used while the step's agents joined. */
  readonly joinCpuMs: number;
  readonly joinAgentCpuMs: number;
  readonly joinLag: Distribution;
  readonly quietLag: Distribution;
  /** Per replica, measured quiet right after the step's agents joined. */
  readonly ca: ProcSample[];
  readonly fanout: FanoutResult;
  readonly one: OneAgentResult;
  readonly workers: FleetStatus;
}

interface CpuPoint {
  readonly ca: ProcSample[];
  readonly pg: Map<number, number>;
  readonly workers: number;
  /** Sync answers the agents had received. */
  readonly answers: number;
  readonly t: number;
}

export interface FleetResults {
  readonly options: FleetOptions;
  readonly fdLimit: string;
  readonly heapLimitMb: number;
  readonly loadBefore: number;
  readonly loadAfter: number;
  readonly totalSeconds: number;
  readonly setup: SetupResult;
  readonly beforeFleet: ProcSample[];
  /** The CAs over an idle window of the same length before any agent joined. */
  readonly baseIdle: { readonly before: { ca: ProcSample[]; t: number }; readonly after: { ca: ProcSample[]; t: number } };
  readonly growth: GrowthStep[];
  readonly fanouts: FanoutResult[];
  readonly alias: FanoutResult;
  readonly notify: Distribution;
  readonly idle: {
    readonly before: CpuPoint;
    readonly after: CpuPoint;
    readonly activity: PgActivity;
    readonly maxBusy: Record<string, number>;
    readonly maxTotal: Record<string, number>;
    readonly busySamples: number;
    readonly samples: number;
    readonly lag: Distribution;
  };
  readonly footprint: DbFootprint;
  readonly fresh: FreshAgentResult;
  /** Admin calls the CAs answered 503 (retried). */
  readonly adminRefused: number;
  /** The agent processes before the baseline phase. */
  readonly fleetEnd: FleetStatus;
  readonly bare: { readonly before: ProcSample; readonly held: ProcSample; readonly idleCpuMs: number; readonly idleWallMs: number; readonly fanouts: FanoutResult[] };
}

const ms = (n: number): string => (Number.isNaN(n) ? '—' : n >= 100 ? `${fmt(n)} ms` : `${n.toFixed(1)} ms`);
const kb = (n: number): string => `${(n / 1024).toFixed(1)} KB`;
const n0 = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const ratio = (a: number, b: number): string => (b > 0 && Number.isFinite(a / b) ? `×${(a / b).toFixed(1)}` : '—');

export function renderReport(r: FleetResults): string {
  const o = r.options;
  const N = o.agents;
  const final = r.growth[r.growth.length - 1]!;
  const replicas = r.beforeFleet.length;
  const perReplica = N / replicas;
  // Memory: what agents add to the replicas, quiet, right after joining: the slope from the first
  // growth step to the last (the first step also pays for heap growth and compiled code), else from before the fleet.
  const first = r.growth.length > 1 ? r.growth[0]! : undefined;
  const caKbPerAgent = first
    ? (sum(final.ca.map((c) => c.rssKb)) - sum(first.ca.map((c) => c.rssKb))) / (final.agents - first.agents)
    : sum(final.ca.map((c, i) => c.rssKb - r.beforeFleet[i]!.rssKb)) / N;
  const bareKbPerConn = (r.bare.held.rssKb - r.bare.before.rssKb) / N;
  const fdsPerAgent = first
    ? (sum(final.ca.map((c) => c.fds)) - sum(first.ca.map((c) => c.fds))) / (final.agents - first.agents)
    : sum(final.ca.map((c, i) => c.fds - r.beforeFleet[i]!.fds)) / N;
  const idleWall = r.idle.after.t - r.idle.before.t;
  // The fleet's share: the CAs' CPU over the idle window minus their own rate without agents.
  const baseRate = sum(r.baseIdle.after.ca.map((c, i) => c.cpuMs - r.baseIdle.before.ca[i]!.cpuMs)) / (r.baseIdle.after.t - r.baseIdle.before.t);
  const caIdleCpu = Math.max(0, sum(r.idle.after.ca.map((c, i) => c.cpuMs - r.idle.before.ca[i]!.cpuMs)) - baseRate * idleWall);
  const polls = r.idle.after.answers - r.idle.before.answers;
  const pgIdleCpu = cpuMsBetween(r.idle.before.pg, r.idle.after.pg);
  // CPU per idle agent as µs of CPU per second per agent (= % of a core per 10,000 agents ÷ 100).
  const usPerAgentSec = (cpuMs: number, wallMs: number, agents: number): number => (cpuMs * 1000) / (wallMs / 1000) / agents;
  const caUs = usPerAgentSec(caIdleCpu, idleWall, N);
  const pgUs = usPerAgentSec(pgIdleCpu, idleWall, N);
  const bareUs = usPerAgentSec(r.bare.idleCpuMs, r.bare.idleWallMs, N);
  const fanLast = median(r.fanouts.slice(-3).map((f) => f.lastMs));
  const fanSettle = median(r.fanouts.slice(-3).map((f) => f.settledMs));
  const bareLast = median(r.bare.fanouts.map((f) => f.lastMs));
  const bareSettle = median(r.bare.fanouts.map((f) => f.settledMs));
  // What one change every agent receives costs, per agent: the replicas' CPU from the trigger until every agent polls again.
  const fanCpuPerAgent = median(r.fanouts.slice(-3).map((f) => f.serverCpuMs)) / N;
  const fanAgentCpuPerAgent = median(r.fanouts.slice(-3).map((f) => f.agentCpuMs)) / N;
  const bareCpuPerAgent = median(r.bare.fanouts.map((f) => f.serverCpuMs)) / N;
  const aliasCpuPerAgent = r.alias.serverCpuMs / N;
  const one = final.one;
  const fp = r.footprint;
  const entryJson = r.fresh.responseBytes / r.fresh.entries;
  const maxBusyIdle = Math.max(0, ...Object.values(r.idle.maxBusy));
  const totalIdle = Object.entries(r.idle.maxTotal).map(([app, n]) => `${app}: ${n}`).join(', ');
  const busyDuringFan = Math.max(...r.fanouts.map((f) => f.pgBusyMax), r.alias.pgBusyMax);
  const fdLimit = Number(r.fdLimit);
  const fdCeiling = fdsPerAgent > 0 ? Math.floor((fdLimit - Math.max(...r.beforeFleet.map((c) => c.fds))) / fdsPerAgent) : NaN;
  const joinRate = sum(r.growth.map((g) => g.agents - (r.growth[r.growth.indexOf(g) - 1]?.agents ?? 0))) / (sum(r.growth.map((g) => g.joinMs)) / 1000);
  const cpuCeiling = caUs + pgUs > 0 ? Math.floor(2_000_000 / (caUs + pgUs)) : NaN;

  const growthRows = r.growth
    .map(
      (g) =>
        `| ${n0(g.agents)} | ${(g.joinMs / 1000).toFixed(1)} s (CPU: CAs ${(g.joinCpuMs / 1000).toFixed(0)} s, agents ${(g.joinAgentCpuMs / 1000).toFixed(0)} s) | ${g.ca.map((c) => `${n0(c.rssKb / 1024)} MB`).join(' / ')} | ${g.ca.map((c) => n0(c.fds)).join(' / ')} | ${ms(g.quietLag.p99)} | ${ms(g.joinLag.p99)} | ${ms(g.fanout.lastMs)} | ${ms(g.fanout.settledMs)} | ${ms(g.fanout.lag.p99)} | ${ms(g.one.latency.p99)} | ${g.fanout.pgBusyMax} |`,
    )
    .join('\n');

  return `## A fleet of ${n0(N)} agents (issue 17)

Machine: ${machine()}; load average ${r.loadBefore.toFixed(1)} before the run, ${r.loadAfter.toFixed(1)} after. Measured ${new Date().toISOString().slice(0, 10)} by
\`npm run bench -- fleet --agents ${N} --entries ${o.entries}\` in ${n0(r.totalSeconds)} s.
Two \`cairn ca start\` replicas on one PostgreSQL (the private cluster \`npm run bench\` starts); ${n0(N)} simulated agents in
${o.workers} processes, each agent with its own key, join token, SVID and keep-alive mTLS connection holding one 30 s long-poll,
speaking through the agent's own client (\`node-agent/ca-client.ts\`: the same routes and messages); half the agents on
each replica. ${n0(fp.entries)} entries (${n0(o.entries)} spread round-robin over the agents, the rest probes, a node alias every agent
belongs to, and the fresh agent's). Everything set up through the admin REST API on loopback. File descriptors: \`ulimit -n\`
${r.fdLimit}; Node's default heap limit here ${n0(r.heapLimitMb)} MB${o.caNodeArgs.length ? `; CA node options \`${o.caNodeArgs.join(' ')}\`` : ''}.

| what | Cairn | raw baseline (same run) | ratio | target |
|---|---:|---:|---:|---:|
| entry change → the owning agent holds it, fleet connected (${one.latency.n} changes, admin call on either replica, ${one.missed} missed) | p50 **${ms(one.latency.p50)}**, p99 **${ms(one.latency.p99)}** | bare NOTIFY→LISTEN p50 ${ms(r.notify.p50)}, p99 ${ms(r.notify.p99)} | p99 ${ratio(one.latency.p99, r.notify.p99)} | p99 ≤ 1 s |
| a change every agent must receive (an entry under the node alias all ${n0(N)} agents share) → the last agent holds it (median of ${Math.min(3, r.fanouts.length)}) | **${ms(fanLast)}** | bare TLS server answering all ${n0(N)} held polls at once: ${ms(bareLast)} | ${ratio(fanLast, bareLast)} | — |
| the same, until every agent holds a long-poll again (the fleet settled) | ${ms(fanSettle)} | ${ms(bareSettle)} | ${ratio(fanSettle, bareSettle)} | — |
| … CPU it costs per agent: the replicas, trigger → settled (the answer, then the agent's next poll) | **${fanCpuPerAgent.toFixed(2)} ms** (the agent processes: ${fanAgentCpuPerAgent.toFixed(2)} ms) | the bare server: ${bareCpuPerAgent.toFixed(2)} ms | ${ratio(fanCpuPerAgent, bareCpuPerAgent)} | — |
| a new node alias matching every agent: each agent's parents change, each resyncs its complete set → the last agent holds it | ${ms(r.alias.lastMs)} (${n0(r.alias.reached)} agents; settled ${ms(r.alias.settledMs)}; ${aliasCpuPerAgent.toFixed(2)} ms of replica CPU per agent) | — | — | — |
| a fresh agent with ${n0(r.fresh.entries)} entries: new key, join token redeemed, first sync holding all of them | **${ms(r.fresh.syncedMs)}** (attest ${ms(r.fresh.attestMs)}, ${kb(r.fresh.responseBytes)} of JSON) | a new PostgreSQL connection reading the same rows: ${ms(r.fresh.bareReadMs)} | ${ratio(r.fresh.syncedMs, r.fresh.bareReadMs)} | — |
| … then its ${n0(r.fresh.entries)} workload SVIDs (keys made locally, batches of 500) | ${ms(r.fresh.svidsMs)} (of which key generation ${ms(r.fresh.keygenMs)}) | — | — | — |
| CA memory per connected idle agent (replicas' RSS ${first ? `from ${n0(first.agents)} to ${n0(final.agents)} agents` : 'with the fleet minus without'} ÷ agents added) | **${kb(caKbPerAgent * 1024)}** | bare TLS server, per held connection: ${kb(bareKbPerConn * 1024)} | ${ratio(caKbPerAgent, bareKbPerConn)} | — |
| CA CPU per connected idle agent (one long-poll per 30 s; ${o.idleSeconds} s window, ${n0(polls)} polls answered, the CAs' own idle rate subtracted) | **${caUs.toFixed(1)} µs/s** (${polls > 0 ? ((caIdleCpu * 1000) / polls).toFixed(0) : '—'} µs per poll; the whole fleet: ${((caUs * N) / 10000).toFixed(1)}% of one core) | bare TLS server: ${bareUs.toFixed(1)} µs/s | ${ratio(caUs, bareUs)} | — |
| PostgreSQL CPU per connected idle agent (the CAs' backends) | ${pgUs.toFixed(1)} µs/s (${polls > 0 ? ((pgIdleCpu * 1000) / polls).toFixed(0) : '—'} µs per poll) | — | — | — |
| PostgreSQL connections while ${n0(N)} long-polls wait (pg_stat_activity, ${r.idle.samples} samples) | most per replica ${totalIdle} (pool of 10, one of them the LISTEN connection); busy at once: at most **${maxBusyIdle}** idle, ${busyDuringFan} during the fan-outs | — | — | a long-poll holds none |
| database per entry | 1 row, **${n0(fp.entryBytes / fp.entries)} bytes** (heap ${n0(fp.entryHeapBytes / fp.entries)}, indexes ${n0(fp.entryIndexBytes / fp.entries)}) | the entry as JSON on the wire: ${n0(entryJson)} bytes | ${ratio(fp.entryBytes / fp.entries, entryJson)} | — |
| database per agent | 1 attested-node row (${n0(fp.nodeBytes / Math.max(1, fp.nodes))} bytes), 1 inventory row per SVID (${n0(fp.svidBytes / Math.max(1, fp.svids))} bytes), the spent token (${n0(fp.tokenBytes / Math.max(1, fp.tokens))} bytes) | — | — | — |

Setup through the admin API: ${n0(o.entries)} entries in ${(r.setup.entriesMs / 1000).toFixed(1)} s (${n0((o.entries * 1000) / r.setup.entriesMs)}/s, batches of ${n0(MAX_ENTRY_BATCH)} through \`POST /v1/entries/batch\`,
${o.adminConcurrency} requests in flight, each batch one transaction under the entry write lock), ${n0(N)} join tokens in ${(r.setup.tokensMs / 1000).toFixed(1)} s (${n0((N * 1000) / r.setup.tokensMs)}/s). Agents joined
(key, token redemption over TLS, first full sync, then the long-poll) at ${n0(joinRate)}/s, ${o.attestConcurrency} at once per agent process.
While idle the CAs answered /healthz (no database; a client's view of event-loop lag) at p99 ${ms(r.idle.lag.p99)}.
Agent processes: ${n0(r.fleetEnd.rssKb / 1024)} MB RSS in all; sync errors seen by agents during the whole run: ${n0(r.fleetEnd.syncErrors)}${r.fleetEnd.lastError ? ` (last: ${r.fleetEnd.lastError.slice(0, 100)})` : ''};
admin calls answered 503 (and retried): ${n0(r.adminRefused)}.

How it grows (per replica figures as A / B; lag = /healthz latency):

| agents | joining took | CA RSS | CA fds | lag p99 quiet | lag p99 while joining | fleet-wide change → last agent | … settled | lag p99 during it | one agent's change p99 | busy PG connections (max) |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${growthRows}

What limits the fleet, from these figures. *Descriptors*: ${fdsPerAgent.toFixed(2)} per agent on its replica; Node raises its
soft limit to the hard one, so at \`ulimit -Hn\` ${r.fdLimit} one replica holds about ${n0(fdCeiling)} agents (with two replicas, plan
for one holding the whole fleet while the other restarts). *Memory*: ${kb(caKbPerAgent * 1024)} of replica RSS per agent
(${n0((caKbPerAgent * 10000) / 1024)} MB per 10,000; Node's heap limit here is ${n0(r.heapLimitMb)} MB, and RSS is not all heap): the live objects of a waiting poll are a
few KB (a heap snapshot, \`CAIRN_FLEET_HEAP_SNAPSHOT\`); the rest is TLS state and heap the collector has not returned.
*Idle CPU*: the replicas and PostgreSQL spend ${(caUs + pgUs).toFixed(1)} µs per agent per second (one 30 s poll each: TLS, HTTP,
the node's row read), so polls alone would fill two cores near ${n0(cpuCeiling)} agents. *Changes every agent receives*: each costs the
replicas ${fanCpuPerAgent.toFixed(2)} ms of CPU per agent (${((fanCpuPerAgent * 10000) / 1000).toFixed(1)} s per 10,000), so its last agent waits about the fleet's size
times that divided by the cores the replicas get; one agent's change arriving meanwhile waits behind it (the growth table's
one-agent p99). A replica writes those answers 100 per turn of its event loop (\`ca/sync/service.ts\`), so /healthz and
other requests get in between slices instead of waiting for the whole burst (the growth table's lag during it).
That is what breaks first as the fleet grows on two shared cores: the latency of fleet-wide changes, then of everything
queued behind them, and it grows linearly with the fleet. A long-poll holds no database connection (above), so the
pool (10 per replica) does not bound the fleet. Settings that move the limits: the hard descriptor limit, the replicas' connection
cap, Node's heap (\`--max-old-space-size\`, only past ~20,000 agents per replica at this rate), and more replicas, since a replica's
agents cost it alone; keep-alive matters only between an agent's polls, which follow each other at once.`;
}

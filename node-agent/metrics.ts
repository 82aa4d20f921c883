import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../lib/clock.js';
import type { WorkloadApiMetrics, WorkloadCallObserver } from '../workload-api/metrics.js';

/** What the agent reports at each scrape (NodeAgent.gauges). */
export interface AgentGauges {
  /** X.509-SVIDs held for workloads. */
  readonly identities: number;
  /** The soonest notAfter among them (ms), if any. */
  readonly earliestSvidExpiry: number | undefined;
  /** When a sync answer last arrived (ms), if ever. */
  readonly lastSyncAt: number | undefined;
  /** Whether FetchJWTSVID would be answered now: synced, an unexpired agent SVID, the CA reachable. */
  readonly canMintJwt: boolean;
}

const seconds = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

/**
 * The agent's Prometheus metrics (prom-client), served only when --metrics-listen is given (this
 * module is loaded only then, so an agent without metrics does not carry the library).
 */
export class AgentMetrics implements WorkloadApiMetrics {
  readonly registry = new Registry();
  private readonly calls: Counter<'method' | 'code'>;
  private readonly latency: Histogram<'method'>;
  private readonly streams: Gauge<'method'>;

  constructor(gauges: () => AgentGauges, clock: Clock, options: { readonly process?: boolean } = {}) {
    const registers = [this.registry];
    if (options.process) collectDefaultMetrics({ register: this.registry });
    this.calls = new Counter({ name: 'cairn_agent_workload_api_calls_total', help: 'Workload API and Envoy SDS calls, by method and gRPC code (counted when the call or stream ends)', labelNames: ['method', 'code'], registers });
    this.latency = new Histogram({
      name: 'cairn_agent_workload_api_seconds',
      help: 'Workload API latency to the first response message, by method',
      labelNames: ['method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    });
    this.streams = new Gauge({ name: 'cairn_agent_workload_api_open_streams', help: 'Workload API and Envoy SDS streams open now, by method', labelNames: ['method'], registers });
    const gauge = (name: string, help: string, value: (g: AgentGauges, now: number) => number | undefined): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const v = value(gauges(), clock.now().getTime());
          if (v === undefined) this.reset();
          else this.set(v);
        },
      });
    };
    gauge('cairn_agent_identities', 'X.509-SVIDs this agent holds for workloads', (g) => g.identities);
    gauge('cairn_agent_svid_earliest_expiry_timestamp_seconds', 'The soonest expiry among the workload SVIDs held (Unix time; absent when none is held)', (g) => (g.earliestSvidExpiry === undefined ? undefined : g.earliestSvidExpiry / 1000));
    gauge('cairn_agent_sync_age_seconds', 'Time since the last successful sync with the CA (absent before the first)', (g, now) => (g.lastSyncAt === undefined ? undefined : Math.max(0, (now - g.lastSyncAt) / 1000)));
    gauge('cairn_agent_jwt_svid_mintable', '1 when a FetchJWTSVID would be answered now (synced, agent SVID valid, CA reachable), else 0', (g) => (g.canMintJwt ? 1 : 0));
  }

  callStarted(method: string, streaming: boolean): WorkloadCallObserver {
    const start = process.hrtime.bigint();
    if (streaming) this.streams.inc({ method });
    let timed = false;
    return {
      firstMessage: () => {
        if (!timed) this.latency.observe({ method }, seconds(start));
        timed = true;
      },
      ended: (code) => {
        if (streaming) this.streams.dec({ method });
        this.calls.inc({ method, code });
      },
    };
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

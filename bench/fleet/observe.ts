import { readdirSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { percentile } from '../harness.js';

/** What the kernel says about a process: resident memory, CPU time used so far, open descriptors. */
export interface ProcSample {
  readonly rssKb: number;
  readonly cpuMs: number;
  readonly fds: number;
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

export function procSample(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  let fds = 0;
  try {
    fds = readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    fds = -1;
  }
  return { rssKb, cpuMs: ((Number(stat[11]) + Number(stat[12])) * 1000) / TICKS_PER_SECOND, fds };
}

/** CPU time of each of a set of processes (e.g. PostgreSQL backends); those that exited are left out. */
export function cpuMsOf(pids: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    try {
      out.set(pid, procSample(pid).cpuMs);
    } catch {
      // gone
    }
  }
  return out;
}

/** CPU used between two cpuMsOf() readings by the processes present in both (a closed connection's backend drops out). */
export function cpuMsBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, ms] of after) {
    const was = before.get(pid);
    if (was !== undefined) total += ms - was;
  }
  return total;
}

export interface PgActivity {
  /** Backends per application_name and state, e.g. { 'cairn-fleet-a': { idle: 8, active: 1 } }. */
  readonly byApp: Record<string, Record<string, number>>;
  readonly backendPids: number[];
}

/**
 * Samples pg_stat_activity while a phase runs: how many connections each replica holds and how many
 * are busy (state active / idle in transaction). The LISTEN connection shows as idle.
 */
export class PgSampler {
  private timer: NodeJS.Timeout | undefined;
  readonly maxBusy: Record<string, number> = {};
  readonly maxTotal: Record<string, number> = {};
  samples = 0;
  busySamples = 0;

  constructor(private readonly db: pg.Client, private readonly prefix: string) {}

  async sample(): Promise<PgActivity> {
    const res = await this.db.query<{ app: string; state: string | null; n: string; pids: number[] }>(
      `SELECT application_name AS app, state, count(*) AS n, array_agg(pid) AS pids FROM pg_stat_activity
       WHERE application_name LIKE $1 GROUP BY 1, 2`,
      [`${this.prefix}%`],
    );
    const byApp: Record<string, Record<string, number>> = {};
    const backendPids: number[] = [];
    for (const r of res.rows) {
      (byApp[r.app] ??= {})[r.state ?? 'unknown'] = Number(r.n);
      backendPids.push(...r.pids);
    }
    return { byApp, backendPids };
  }

  start(everyMs = 200): void {
    const tick = async (): Promise<void> => {
      const { byApp } = await this.sample().catch(() => ({ byApp: {} as PgActivity['byApp'] }));
      this.samples++;
      let anyBusy = false;
      for (const [app, states] of Object.entries(byApp)) {
        const busy = Object.entries(states).filter(([s]) => s !== 'idle').reduce((n, [, v]) => n + v, 0);
        const total = Object.values(states).reduce((n, v) => n + v, 0);
        this.maxBusy[app] = Math.max(this.maxBusy[app] ?? 0, busy);
        this.maxTotal[app] = Math.max(this.maxTotal[app] ?? 0, total);
        anyBusy ||= busy > 0;
      }
      if (anyBusy) this.busySamples++;
      if (this.timer) this.timer = setTimeout(() => void tick(), everyMs);
    };
    this.timer = setTimeout(() => void tick(), 0);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * How quickly each replica answers GET /healthz (no database) while a phase runs: the request waits
 * behind whatever the event loop is doing, so its latency is the replica's event-loop lag as a client sees it.
 */
export class LagProbe {
  private running = false;
  private done: Promise<void> = Promise.resolve();
  readonly latencies: number[] = [];

  constructor(private readonly urls: readonly string[]) {}

  start(everyMs = 100): void {
    this.running = true;
    this.done = Promise.all(
      this.urls.map(async (url) => {
        while (this.running) {
          const t0 = performance.now();
          try {
            const res = await fetch(url + '/healthz', { signal: AbortSignal.timeout(30_000) });
            await res.arrayBuffer();
            this.latencies.push(performance.now() - t0);
          } catch {
            this.latencies.push(30_000);
          }
          await new Promise((r) => setTimeout(r, everyMs));
        }
      }),
    ).then(() => undefined);
  }

  async stop(): Promise<{ p50: number; p99: number; max: number; n: number }> {
    this.running = false;
    await this.done;
    const xs = this.latencies;
    return xs.length === 0 ? { p50: 0, p99: 0, max: 0, n: 0 } : { p50: percentile(xs, 50), p99: percentile(xs, 99), max: Math.max(...xs), n: xs.length };
  }
}

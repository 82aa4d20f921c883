import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../lib/paths.js';
import type { AgentTicket, FromWorker, ToWorker, WorkerStatus } from './protocol.js';

type Got = Extract<FromWorker, { type: 'got' }>;
type Full = Extract<FromWorker, { type: 'full' }>;

/** The fleet's figures: every worker's status summed (the last error of any). */
export type FleetStatus = Omit<WorkerStatus, 'type'>;

/**
 * The simulated fleet: a few worker processes (bench/fleet/agents.ts), each holding a share of the
 * agents. Agent i lives in worker i % workers. Events ('got', 'full') are routed to whoever waits.
 */
export class Fleet {
  private readonly workers: ChildProcess[] = [];
  private readonly statusWaiters = new Map<ChildProcess, ((s: WorkerStatus) => void)[]>();
  private readonly onceWaiters: { type: string; resolve: () => void; left: Set<ChildProcess> }[] = [];
  /** Receipt time of each probe entry by each agent (first receipt). */
  readonly got = new Map<string, Map<number, number>>();
  readonly fulls: Full[] = [];
  private listeners: ((e: Got | Full) => void)[] = [];

  constructor(count: number) {
    const script = join(packageRoot(), 'bench', 'fleet', 'agents.ts');
    for (let i = 0; i < count; i++) {
      const w = fork(script, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      w.on('message', (m: FromWorker) => this.onMessage(w, m));
      this.workers.push(w);
    }
  }

  get pids(): number[] {
    return this.workers.map((w) => w.pid!);
  }

  private onMessage(w: ChildProcess, m: FromWorker): void {
    if (m.type === 'status') {
      const q = this.statusWaiters.get(w);
      q?.shift()?.(m);
    } else if (m.type === 'got') {
      let per = this.got.get(m.spiffeId);
      if (!per) this.got.set(m.spiffeId, (per = new Map()));
      if (!per.has(m.agent)) per.set(m.agent, m.t);
      for (const l of this.listeners) l(m);
    } else if (m.type === 'full') {
      this.fulls.push(m);
      for (const l of this.listeners) l(m);
    } else {
      for (const o of [...this.onceWaiters]) {
        if (o.type !== m.type) continue;
        o.left.delete(w);
        if (o.left.size === 0) {
          this.onceWaiters.splice(this.onceWaiters.indexOf(o), 1);
          o.resolve();
        }
      }
    }
  }

  /** Resolves once every worker has sent a message of `type`. */
  private all(type: string): Promise<void> {
    return new Promise((resolve) => this.onceWaiters.push({ type, resolve, left: new Set(this.workers) }));
  }

  private send(w: ChildProcess, msg: ToWorker): void {
    w.send(msg);
  }

  /** Hands tickets to workers (agent i to worker i % n); they attest and start syncing at once. */
  attest(tickets: readonly AgentTicket[], concurrencyPerWorker: number): Promise<void> {
    const done = this.all('attested-all');
    this.workers.forEach((w, k) => this.send(w, { type: 'attest', tickets: tickets.filter((t) => t.index % this.workers.length === k), concurrency: concurrencyPerWorker }));
    return done;
  }

  retarget(url: string, authorityPem: string, concurrencyPerWorker: number): Promise<void> {
    const done = this.all('retargeted');
    for (const w of this.workers) this.send(w, { type: 'retarget', url, authorityPem, concurrency: concurrencyPerWorker });
    return done;
  }

  async status(): Promise<FleetStatus> {
    const each = await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<WorkerStatus>((resolve) => {
            const q = this.statusWaiters.get(w) ?? [];
            q.push(resolve);
            this.statusWaiters.set(w, q);
            this.send(w, { type: 'status' });
          }),
      ),
    );
    const sum = (k: 'attested' | 'attestFailures' | 'synced' | 'polling' | 'answers' | 'syncErrors' | 'rssKb' | 'cpuMs'): number => each.reduce((n, s) => n + s[k], 0);
    return {
      attested: sum('attested'),
      attestFailures: sum('attestFailures'),
      synced: sum('synced'),
      polling: sum('polling'),
      answers: sum('answers'),
      syncErrors: sum('syncErrors'),
      lastError: each.find((s) => s.lastError)?.lastError,
      rssKb: sum('rssKb'),
      cpuMs: sum('cpuMs'),
    };
  }

  /** Polls status until `done` holds, printing progress; throws after `timeoutMs`. */
  async until(what: string, done: (s: FleetStatus) => boolean, timeoutMs: number, everyMs = 1000): Promise<FleetStatus> {
    const start = performance.now();
    let last = '';
    for (;;) {
      const s = await this.status();
      if (done(s)) return s;
      const line = `   ${what}: attested ${s.attested}, synced ${s.synced}, polling ${s.polling}, attest failures ${s.attestFailures}, sync errors ${s.syncErrors}${s.lastError ? ` (last: ${s.lastError.slice(0, 120)})` : ''}`;
      if (line !== last && performance.now() - start > 2000) console.error(line);
      last = line;
      if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}; ${line.trim()}`);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  /**
   * Resolves with each agent's receipt time of the probe `spiffeId`, once `expected` agents hold it
   * (or after `timeoutMs`, with whatever arrived).
   */
  waitForProbe(spiffeId: string, expected: number, timeoutMs: number): Promise<Map<number, number>> {
    return new Promise((resolve) => {
      const check = (): boolean => (this.got.get(spiffeId)?.size ?? 0) >= expected;
      const finish = (): void => {
        clearTimeout(timer);
        this.listeners = this.listeners.filter((l) => l !== listener);
        resolve(this.got.get(spiffeId) ?? new Map());
      };
      const listener = (e: Got | Full): void => {
        if (e.type === 'got' && e.spiffeId === spiffeId && check()) finish();
      };
      const timer = setTimeout(finish, timeoutMs);
      this.listeners.push(listener);
      if (check()) finish();
    });
  }

  /** Resolves with the times of the first `expected` complete resyncs that satisfy `match`, after `since`. */
  waitForFulls(match: (f: Full) => boolean, expected: number, since: number, timeoutMs: number): Promise<Map<number, number>> {
    return new Promise((resolve) => {
      const seen = new Map<number, number>();
      for (const f of this.fulls) if (f.t >= since && match(f) && !seen.has(f.agent)) seen.set(f.agent, f.t);
      const finish = (): void => {
        clearTimeout(timer);
        this.listeners = this.listeners.filter((l) => l !== listener);
        resolve(seen);
      };
      const listener = (e: Got | Full): void => {
        if (e.type === 'full' && e.t >= since && match(e) && !seen.has(e.agent)) {
          seen.set(e.agent, e.t);
          if (seen.size >= expected) finish();
        }
      };
      const timer = setTimeout(finish, timeoutMs);
      this.listeners.push(listener);
      if (seen.size >= expected) finish();
    });
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.exitCode !== null || w.signalCode !== null) return resolve();
            const timer = setTimeout(() => w.kill('SIGKILL'), 10_000);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            try {
              this.send(w, { type: 'stop' });
            } catch {
              w.kill('SIGKILL');
            }
          }),
      ),
    );
  }
}

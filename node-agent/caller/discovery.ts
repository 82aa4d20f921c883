import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '../../lib/clock.js';
import { describeWriteError, errnoCode, writeFileAtomic } from '../../lib/fs.js';
import type { Logger } from '../../lib/log.js';
import { RepeatGate } from '../../lib/repeat-gate.js';
import type { PeerInfo } from '../../workload-api/ports.js';

export interface UnregisteredCaller {
  readonly selectors: readonly string[];
  readonly lastPid: number;
  readonly count: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  /** Why templates that apply to it gave no identity (a selector value that cannot stand in a SPIFFE ID, the CA's refusal). */
  readonly reason?: string | undefined;
}

/** How often unregistered.json may be rewritten at most. */
export const DEFAULT_DISCOVERY_WRITE_INTERVAL_MS = 5000;

/**
 * Discovery mode: callers that matched no entry (and got no identity from a template, with the reason), deduplicated by their selector set and bounded,
 * so operators can write entries from real traffic before enforcing. Persisted for
 * `cairn agent unregistered`: the list in memory is current at every call, the file is rewritten
 * (temp file, fsync, rename) at most once per interval, so a caller with no identity calling in a
 * loop cannot make the agent write and fsync on every call.
 */
export class DiscoveryLog {
  private readonly seen = new Map<string, UnregisteredCaller>();
  private readonly file: string;
  private readonly writeFailures = new RepeatGate();
  private readonly intervalMs: number;
  private readonly max: number;
  private lastWrite: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private dirty = false;

  constructor(dataDir: string, private readonly clock: Clock, private readonly logger: Logger, options: { max?: number | undefined; writeIntervalMs?: number | undefined } = {}) {
    this.file = join(dataDir, 'unregistered.json');
    this.max = options.max ?? 1000;
    this.intervalMs = options.writeIntervalMs ?? DEFAULT_DISCOVERY_WRITE_INTERVAL_MS;
    if (existsSync(this.file)) {
      try {
        for (const c of JSON.parse(readFileSync(this.file, 'utf8')) as UnregisteredCaller[]) this.seen.set(c.selectors.join(' '), c);
      } catch {
        // a damaged file only loses history
      }
    }
  }

  record(peer: PeerInfo, selectors: readonly string[], reason?: string): void {
    const key = [...selectors].sort().join(' ');
    const now = this.clock.now().toISOString();
    const prev = this.seen.get(key);
    if (!prev && this.seen.size >= this.max) return;
    this.seen.set(key, { selectors: [...selectors].sort(), lastPid: peer.pid, count: (prev?.count ?? 0) + 1, firstSeen: prev?.firstSeen ?? now, lastSeen: now, ...(reason ? { reason: reason.slice(0, 2000) } : {}) });
    this.dirty = true;
    const t = this.clock.now().getTime();
    const since = this.lastWrite === undefined ? Infinity : t - this.lastWrite;
    if (since >= this.intervalMs || since < 0) {
      this.flush();
    } else if (!this.timer) {
      // the rest of the interval's callers are written together at its end
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, this.intervalMs - since).unref();
    }
  }

  /** Writes the list now if it changed since the last write (also on shutdown). */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (!this.dirty) return;
    this.lastWrite = this.clock.now().getTime();
    try {
      writeFileAtomic(this.file, JSON.stringify(this.list(), null, 2) + '\n', 0o600);
      this.dirty = false;
      this.writeFailures.reset();
    } catch (err) {
      // Discovery is best effort: the caller's RPC goes on, the list stays in memory and is written
      // with a later caller. Logged once a minute at most, however many callers arrive meanwhile.
      const code = errnoCode(err);
      if (this.writeFailures.shouldLog(code ?? 'other', this.clock.now().getTime())) {
        this.logger.warn({ event: 'discovery.persist_failed', file: this.file, code, reason: describeWriteError(err) }, 'could not write the list of unregistered callers; kept in memory, written with a later one');
      }
    }
  }

  list(): UnregisteredCaller[] {
    return [...this.seen.values()];
  }
}

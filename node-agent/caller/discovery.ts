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
}

/**
 * Discovery mode: callers that matched no entry, deduplicated by their selector set and bounded,
 * so operators can write entries from real traffic before enforcing. Persisted for
 * `cairn agent unregistered`.
 */
export class DiscoveryLog {
  private readonly seen = new Map<string, UnregisteredCaller>();
  private readonly file: string;
  private readonly writeFailures = new RepeatGate();

  constructor(dataDir: string, private readonly clock: Clock, private readonly logger: Logger, private readonly max = 1000) {
    this.file = join(dataDir, 'unregistered.json');
    if (existsSync(this.file)) {
      try {
        for (const c of JSON.parse(readFileSync(this.file, 'utf8')) as UnregisteredCaller[]) this.seen.set(c.selectors.join(' '), c);
      } catch {
        // a damaged file only loses history
      }
    }
  }

  record(peer: PeerInfo, selectors: readonly string[]): void {
    const key = [...selectors].sort().join(' ');
    const now = this.clock.now().toISOString();
    const prev = this.seen.get(key);
    if (!prev && this.seen.size >= this.max) return;
    this.seen.set(key, { selectors: [...selectors].sort(), lastPid: peer.pid, count: (prev?.count ?? 0) + 1, firstSeen: prev?.firstSeen ?? now, lastSeen: now });
    try {
      writeFileAtomic(this.file, JSON.stringify(this.list(), null, 2) + '\n', 0o600);
      this.writeFailures.reset();
    } catch (err) {
      // Discovery is best effort: the caller's RPC goes on, the list stays in memory and is written
      // with the next caller. Logged once a minute at most, however many callers arrive meanwhile.
      const code = errnoCode(err);
      if (this.writeFailures.shouldLog(code ?? 'other', this.clock.now().getTime())) {
        this.logger.warn({ event: 'discovery.persist_failed', file: this.file, code, reason: describeWriteError(err) }, 'could not write the list of unregistered callers; kept in memory, written with the next one');
      }
    }
  }

  list(): UnregisteredCaller[] {
    return [...this.seen.values()];
  }
}

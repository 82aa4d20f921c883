import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import type { RelationshipStore } from './store.js';
import type { RelationshipService } from './relationships.js';

export interface RefresherOptions {
  /** How often due relationships are looked for. */
  readonly tickMs: number;
  /** At most this many fetches at once per replica. */
  readonly batch: number;
}

/**
 * The refresh loop of federation relationships (a run(signal) task of every replica). Each tick
 * claims the relationships that are due — moving their next attempt past the fetch's time bound, so
 * replicas never fetch the same one at once — and refreshes them.
 */
export class Refresher {
  constructor(
    private readonly deps: { readonly clock: Clock; readonly logger: Logger; readonly store: RelationshipStore; readonly relationships: RelationshipService },
    private readonly options: RefresherOptions = { tickMs: 1000, batch: 8 },
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    let lastWarned = 0;
    while (!signal.aborted) {
      try {
        await this.pass();
      } catch (err) {
        const now = this.deps.clock.now().getTime();
        if (now - lastWarned > 60_000) {
          lastWarned = now;
          this.deps.logger.warn({ err, event: 'federation.refresher_failed' }, 'the federation refresher could not run; will retry');
        }
      }
      await sleep(this.options.tickMs, undefined, { signal }).catch(() => undefined);
    }
  }

  /** One round: claim what is due and refresh it. */
  async pass(): Promise<number> {
    const now = this.deps.clock.now();
    const due = await this.deps.store.claimDue(now, new Date(now.getTime() + 60_000), this.options.batch);
    await Promise.all(due.map((r) => this.deps.relationships.refresh(r)));
    return due.length;
  }
}

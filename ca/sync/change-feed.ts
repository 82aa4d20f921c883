import type { Database, Unlisten } from '../db/database.js';
import { listenForChanges } from '../db/changes.js';

export interface ChangeWaiter {
  /** Resolves at the first change since arm(), after `timeoutMs`, or when `signal` aborts. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<void>;
  cancel(): void;
}

/**
 * Fans the database's change notifications out to long-polling requests in this process. A
 * request arms a waiter *before* it reads the store, so a change that commits between the read
 * and the wait still wakes it.
 */
export class ChangeFeed {
  private readonly waiters = new Set<() => void>();
  private unlisten: Unlisten | undefined;
  private readonly stopping = new AbortController();
  /** Aborted by stop(): long-polls answer at once so the server can close without waiting them out. */
  readonly closing: AbortSignal = this.stopping.signal;

  constructor(private readonly db: Database) {}

  async start(): Promise<void> {
    this.unlisten = await listenForChanges(this.db, () => this.wakeAll());
  }

  /** Long-polls answer at once, and new ones do not wait: for a server about to close its listeners. */
  endLongPolls(): void {
    this.stopping.abort();
    this.wakeAll();
  }

  async stop(): Promise<void> {
    this.endLongPolls();
    await this.unlisten?.();
    this.unlisten = undefined;
  }

  arm(): ChangeWaiter {
    let fired = false;
    let wake: (() => void) | undefined;
    const onChange = (): void => {
      fired = true;
      wake?.();
    };
    this.waiters.add(onChange);
    const cancel = (): void => {
      this.waiters.delete(onChange);
    };
    return {
      cancel,
      wait: (timeoutMs, signal) =>
        new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', done);
            cancel();
            resolve();
          };
          const timer = setTimeout(done, Math.max(0, timeoutMs));
          signal?.addEventListener('abort', done, { once: true });
          wake = done;
          if (fired || signal?.aborted) done();
        }),
    };
  }

  private wakeAll(): void {
    for (const w of [...this.waiters]) w();
  }
}

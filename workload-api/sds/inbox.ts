/**
 * The requests of one bidirectional xDS stream, read ahead of the responses, plus a wake-up for
 * anything else the handler waits on (a cache change, shutdown, the client going away). xDS clients
 * send a request whenever they like (an ACK, a new subscription) while the server pushes whenever
 * its state changes, so the handler must wait for either; a generator cannot, without this.
 *
 * Reading pauses while `limit` requests wait unprocessed: a client that floods requests and never
 * reads the answers holds at most that many in memory, and HTTP/2 flow control holds the rest.
 */
export class Inbox<T> {
  private readonly queue: T[] = [];
  private pending = false;
  private waiter: (() => void) | undefined;
  private drained: (() => void) | undefined;
  ended = false;
  error: unknown;

  constructor(source: AsyncIterable<T>, private readonly limit = 16) {
    void this.pump(source);
  }

  private async pump(source: AsyncIterable<T>): Promise<void> {
    try {
      for await (const message of source) {
        this.queue.push(message);
        this.notify();
        while (this.queue.length >= this.limit && !this.ended) await new Promise<void>((resolve) => (this.drained = resolve));
        if (this.ended) return;
      }
    } catch (err) {
      this.error = err;
    } finally {
      this.ended = true;
      this.notify();
    }
  }

  /** The next unprocessed request, if any. */
  shift(): T | undefined {
    const message = this.queue.shift();
    if (this.queue.length < this.limit && this.drained) {
      const d = this.drained;
      this.drained = undefined;
      d();
    }
    return message;
  }

  /** Wakes the handler (a wake-up with nobody waiting is kept for the next wait). */
  notify(): void {
    this.pending = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Resolves at the next notify, or at once if one came since the last wait. */
  wait(): Promise<void> {
    if (this.pending || this.queue.length > 0 || this.ended) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.waiter = () => {
        this.pending = false;
        resolve();
      };
    });
  }

  /** Stops reading (the handler is done); a pump waiting for room gives up. */
  close(): void {
    this.ended = true;
    const d = this.drained;
    this.drained = undefined;
    d?.();
  }
}

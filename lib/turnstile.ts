/**
 * Lets waiting callers through a few per turn of the event loop. A change that wakes thousands of
 * waiters at once would otherwise run all their continuations (reads, answers, TLS writes) in one
 * stretch of microtasks, and every other request on the process, /healthz included, would wait for
 * the whole burst. Between two slices the loop polls for I/O.
 */
const COMPACT_AFTER = 1024;

export class Turnstile {
  private readonly queue: (() => void)[] = [];
  private head = 0;
  private scheduled = false;

  constructor(private readonly perTurn = 100) {
    if (!Number.isInteger(perTurn) || perTurn < 1) throw new RangeError('perTurn must be a positive integer');
  }

  /** Resolves in a later turn, after at most perTurn - 1 other callers queued before it in that turn. */
  pass(): Promise<void> {
    return new Promise((resolve) => {
      this.queue.push(resolve);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.release);
      }
    });
  }

  /** Callers waiting for their turn. */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  private readonly release = (): void => {
    const end = Math.min(this.queue.length, this.head + this.perTurn);
    for (; this.head < end; this.head++) this.queue[this.head]!();
    if (this.head < this.queue.length) {
      // Under steady load the queue may never empty: drop the callers already let through.
      if (this.head >= COMPACT_AFTER) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      setImmediate(this.release);
      return;
    }
    this.queue.length = 0;
    this.head = 0;
    this.scheduled = false;
  };
}

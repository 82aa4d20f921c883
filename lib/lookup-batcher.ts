/** Keys whose lookups wait for the next load, with the callers waiting on each. */
type Queue<K, V> = Map<K, { resolve(value: V | undefined): void; reject(err: unknown): void }[]>;

export interface LookupBatcherOptions {
  /** Loads that may run at once; keys asked for meanwhile wait for the next one. */
  readonly concurrency: number;
  /** Keys per load at most (one query's parameter array). */
  readonly maxKeys: number;
}

/**
 * Point lookups that many requests make at once (a node's record on every mTLS request), as one load
 * over all their keys, with at most `concurrency` loads in flight. When a whole fleet comes back at
 * once, each of its requests used to make its own query: thousands of them queued for a pool of ten
 * connections, waited out the pool's timeout and failed, and the retries kept the queue full. Here the
 * number of queries stays bounded whatever the request rate, and a busier moment only makes the loads
 * larger. A lookup is answered by a load that started after it was asked, never by an older one: the
 * answer is as fresh as a query of its own would have been.
 */
export class LookupBatcher<K, V> {
  private queued: Queue<K, V> = new Map();
  private running = 0;
  private scheduled = false;

  constructor(
    /** Reads every key it is given; a key missing from the answer has no value. */
    private readonly load: (keys: K[]) => Promise<ReadonlyMap<K, V>>,
    /** By default two loads at once (a few of a pool of ten connections), each of at most 1,000 keys. */
    private readonly options: LookupBatcherOptions = { concurrency: 2, maxKeys: 1000 },
  ) {}

  get(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const waiting = this.queued.get(key);
      if (waiting) waiting.push({ resolve, reject });
      else this.queued.set(key, [{ resolve, reject }]);
      this.schedule();
    });
  }

  /** Starts loads after this turn of the event loop, so that every request arriving in it joins. */
  private schedule(): void {
    if (this.scheduled || this.running >= this.options.concurrency || this.queued.size === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.running < this.options.concurrency && this.queued.size > 0) {
      let batch: Queue<K, V>;
      if (this.queued.size <= this.options.maxKeys) {
        batch = this.queued;
        this.queued = new Map();
      } else {
        batch = new Map();
        for (const [key, waiting] of this.queued) {
          if (batch.size >= this.options.maxKeys) break;
          batch.set(key, waiting);
        }
        for (const key of batch.keys()) this.queued.delete(key);
      }
      this.running++;
      void this.run(batch).finally(() => {
        this.running--;
        this.schedule();
      });
    }
  }

  private async run(batch: Queue<K, V>): Promise<void> {
    let values: ReadonlyMap<K, V>;
    try {
      values = await this.load([...batch.keys()]);
    } catch (err) {
      for (const waiting of batch.values()) for (const w of waiting) w.reject(err);
      return;
    }
    for (const [key, waiting] of batch) for (const w of waiting) w.resolve(values.get(key));
  }
}

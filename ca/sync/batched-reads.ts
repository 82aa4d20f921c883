interface Pending<R> {
  readonly parents: Set<string>;
  readonly callers: { readonly parents: readonly string[]; resolve(rows: R[]): void; reject(err: unknown): void }[];
}

/**
 * Per-parent reads that many long-polls make at once, as one query. A change every agent receives (an
 * entry under a node alias the fleet shares, a template) wakes every long-poll at once, and each used
 * to read its own parents' rows: 1,000 agents, 1,000 queries of each kind through a pool of 10
 * connections, and agents' requests timed out waiting for one. Reads of the same kind from the same
 * revision now run once over every caller's parents; each caller gets the rows of its own parents, in
 * the order the query returned them.
 *
 * At most `concurrency` queries run at once. A read asked for while they run joins a batch that
 * starts when one of them ends, so a fleet arriving over many turns of the event loop (as it does
 * after answering together) costs a bounded number of connections, and the batches grow instead.
 * A batch is never answered by a query that started before one of its callers asked.
 */
export class BatchedReads {
  /** Batches not started yet, each with what starts it. */
  private readonly pending = new Map<string, { readonly batch: Pending<unknown>; start(): Promise<void> }>();
  private running = 0;
  private scheduled = false;

  constructor(private readonly concurrency = 2) {}

  /**
   * `load` reads the rows of all the parents it is given; `kind` and `revision` name what it reads,
   * so only calls that would run the same query but for their parents are joined.
   */
  read<R extends { readonly parentId: string }>(kind: string, revision: number, parents: readonly string[], load: (parents: string[]) => Promise<R[]>): Promise<R[]> {
    const key = `${kind} ${revision}`;
    let batch = this.pending.get(key)?.batch as Pending<R> | undefined;
    if (!batch) {
      const created: Pending<R> = { parents: new Set(), callers: [] };
      batch = created;
      this.pending.set(key, { batch: created as Pending<unknown>, start: () => this.run(created, load) });
      this.schedule();
    }
    for (const p of parents) batch.parents.add(p);
    const joined = batch;
    return new Promise<R[]>((resolve, reject) => joined.callers.push({ parents, resolve, reject }));
  }

  /** Every long-poll a notification woke reaches its reads within this turn: start after it. */
  private schedule(): void {
    if (this.scheduled || this.running >= this.concurrency || this.pending.size === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      while (this.running < this.concurrency && this.pending.size > 0) {
        const [key, next] = this.pending.entries().next().value!;
        this.pending.delete(key);
        this.running++;
        void next.start().finally(() => {
          this.running--;
          this.schedule();
        });
      }
    });
  }

  private async run<R extends { readonly parentId: string }>(batch: Pending<R>, load: (parents: string[]) => Promise<R[]>): Promise<void> {
    let rows: R[];
    try {
      rows = await load([...batch.parents]);
    } catch (err) {
      for (const c of batch.callers) c.reject(err);
      return;
    }
    if (batch.callers.length === 1) return batch.callers[0]!.resolve(rows);
    const byParent = new Map<string, number[]>();
    rows.forEach((r, i) => {
      const at = byParent.get(r.parentId);
      if (at) at.push(i);
      else byParent.set(r.parentId, [i]);
    });
    for (const c of batch.callers) {
      const mine = [...new Set(c.parents)].flatMap((p) => byParent.get(p) ?? []).sort((a, b) => a - b);
      c.resolve(mine.map((i) => rows[i]!));
    }
  }
}

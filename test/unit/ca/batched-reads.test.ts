import { describe, expect, it } from 'vitest';
import { BatchedReads } from '../../../ca/sync/batched-reads.js';

interface Row {
  readonly parentId: string;
  readonly v: string;
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A load per call that answers one row per parent when the test releases it. */
function gated(tag: string) {
  const calls: string[][] = [];
  const releases: (() => void)[] = [];
  const load = (parents: string[]): Promise<Row[]> => {
    calls.push([...parents].sort());
    return new Promise((resolve) => releases.push(() => resolve(parents.map((p) => ({ parentId: p, v: `${tag}:${p}` })))));
  };
  return { load, calls, release: () => releases.splice(0).forEach((r) => r()) };
}

describe('BatchedReads', () => {
  it("joins reads of one kind and revision into one query, and answers each caller its own parents' rows", async () => {
    const reads = new BatchedReads(2);
    const g = gated('q');
    const a = reads.read('entries', 5, ['n1', 'alias'], g.load);
    const b = reads.read('entries', 5, ['n2', 'alias'], g.load);
    const other = reads.read('entries', 6, ['n3'], g.load);
    await turn();
    expect(g.calls).toEqual([['alias', 'n1', 'n2'], ['n3']]);
    g.release();
    expect((await a).map((r) => r.parentId).sort()).toEqual(['alias', 'n1']);
    expect((await b).map((r) => r.parentId).sort()).toEqual(['alias', 'n2']);
    expect((await other).map((r) => r.parentId)).toEqual(['n3']);
  });

  it('runs at most `concurrency` queries; reads asked meanwhile join a batch that starts later', async () => {
    const reads = new BatchedReads(1);
    const first = gated('first');
    const a = reads.read('entries', 1, ['n1'], first.load);
    await turn();
    expect(first.calls).toEqual([['n1']]);
    // these arrive over several turns while the first query runs: one later query answers all of them
    const later = gated('later');
    const b = reads.read('entries', 1, ['n1'], later.load);
    await turn();
    const c = reads.read('entries', 1, ['n2'], later.load);
    await turn();
    expect(later.calls).toEqual([]);
    first.release();
    expect((await a)[0]!.v).toBe('first:n1');
    await turn();
    await turn();
    expect(later.calls).toEqual([['n1', 'n2']]);
    later.release();
    // never the answer of the query that was already running when they asked
    expect((await b)[0]!.v).toBe('later:n1');
    expect((await c)[0]!.v).toBe('later:n2');
  });

  it("a failed query rejects its batch's callers, and later reads still run", async () => {
    const reads = new BatchedReads(1);
    await expect(reads.read('entries', 1, ['n1'], () => Promise.reject(new Error('store down')))).rejects.toThrow('store down');
    expect(await reads.read('entries', 1, ['n1'], async (ps) => ps.map((p) => ({ parentId: p, v: 'ok' })))).toEqual([{ parentId: 'n1', v: 'ok' }]);
  });
});

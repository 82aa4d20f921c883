import { describe, expect, it } from 'vitest';
import { LookupBatcher } from '../../../lib/lookup-batcher.js';

/** A load that records the keys of each call and answers when the test releases it. */
function gatedLoad() {
  const calls: string[][] = [];
  const releases: (() => void)[] = [];
  let value = 'v1';
  const load = (keys: string[]): Promise<Map<string, string>> => {
    calls.push([...keys]);
    const answer = value;
    return new Promise((resolve) => releases.push(() => resolve(new Map(keys.filter((k) => k !== 'missing').map((k) => [k, `${k}=${answer}`])))));
  };
  return {
    load,
    calls,
    releaseAll: () => releases.splice(0).forEach((r) => r()),
    setValue: (v: string) => void (value = v),
  };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('LookupBatcher', () => {
  it('joins the lookups of one turn into one load, and answers each caller its own key', async () => {
    const g = gatedLoad();
    const b = new LookupBatcher(g.load, { concurrency: 2, maxKeys: 100 });
    const answers = Promise.all(['a', 'b', 'a', 'missing'].map((k) => b.get(k)));
    await turn();
    expect(g.calls).toEqual([['a', 'b', 'missing']]);
    g.releaseAll();
    expect(await answers).toEqual(['a=v1', 'b=v1', 'a=v1', undefined]);
  });

  it('keeps at most `concurrency` loads in flight; lookups meanwhile wait for a later load, never an older answer', async () => {
    const g = gatedLoad();
    const b = new LookupBatcher(g.load, { concurrency: 1, maxKeys: 100 });
    const first = b.get('a');
    await turn();
    // asked while the first load runs: it must not get the first load's (older) answer
    g.setValue('v2');
    const later = [b.get('a'), b.get('c'), b.get('d')];
    await turn();
    expect(g.calls).toEqual([['a']]);
    g.releaseAll();
    expect(await first).toBe('a=v1');
    await turn();
    await turn();
    expect(g.calls).toEqual([['a'], ['a', 'c', 'd']]);
    g.releaseAll();
    expect(await Promise.all(later)).toEqual(['a=v2', 'c=v2', 'd=v2']);
  });

  it('splits a queue longer than maxKeys over several loads', async () => {
    const g = gatedLoad();
    const b = new LookupBatcher(g.load, { concurrency: 3, maxKeys: 2 });
    const answers = Promise.all(['a', 'b', 'c', 'd', 'e'].map((k) => b.get(k)));
    await turn();
    expect(g.calls).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    g.releaseAll();
    expect(await answers).toEqual(['a=v1', 'b=v1', 'c=v1', 'd=v1', 'e=v1']);
  });

  it("a failed load rejects its callers only; the next load runs", async () => {
    let fail = true;
    const b = new LookupBatcher(async (keys: string[]) => {
      if (fail) throw new Error('store down');
      return new Map(keys.map((k) => [k, k]));
    }, { concurrency: 1, maxKeys: 10 });
    await expect(Promise.all([b.get('a'), b.get('b')])).rejects.toThrow('store down');
    fail = false;
    expect(await b.get('a')).toBe('a');
  });
});

import { describe, expect, it } from 'vitest';
import { decodeChange, encodeChange } from '../../../ca/db/changes.js';
import type { Database } from '../../../ca/db/database.js';
import { ChangeFeed, type Woken } from '../../../ca/sync/change-feed.js';

const server = (td: string): string => `spiffe://${td}/cairn/server`;

/** A database whose only ability is to deliver the notifications a test sends. */
function fakeDatabase(): { db: Database; notify: (payload: string) => void; lose: () => void } {
  let deliver: (payload: string) => void = () => undefined;
  let lost: (() => void) | undefined;
  const db = {
    kind: 'embedded',
    query: () => Promise.reject(new Error('no queries here')),
    transaction: () => Promise.reject(new Error('no queries here')),
    listen: async (_channel: string, onNotify: (payload: string) => void, onLost?: () => void) => {
      deliver = onNotify;
      lost = onLost;
      return async () => undefined;
    },
    close: async () => undefined,
  } as unknown as Database;
  return { db, notify: (p) => deliver(p), lose: () => lost?.() };
}

async function feedWith(): Promise<{ feed: ChangeFeed; notify: (payload: string) => void; lose: () => void }> {
  const { db, notify, lose } = fakeDatabase();
  const feed = new ChangeFeed(db, { now: () => new Date() }, server);
  await feed.start();
  return { feed, notify, lose };
}

/** Arms a waiter per (trust domain, node, parents) and reports which of them a notification woke, and why. */
async function woken(notify: (payload: string) => void, feed: ChangeFeed, payload: string): Promise<(Woken | undefined)[]> {
  const specs: [string, string, string[]][] = [
    ['a.test', 'spiffe://a.test/node/1', ['spiffe://a.test/node/1', 'spiffe://a.test/alias/x']],
    ['a.test', 'spiffe://a.test/node/2', ['spiffe://a.test/node/2']],
    ['b.test', 'spiffe://b.test/node/1', ['spiffe://b.test/node/1']],
  ];
  const results: (Woken | undefined)[] = specs.map(() => undefined);
  const waiters = specs.map(([td, node, parents], i) => {
    const w = feed.arm(td, node);
    w.watch(parents);
    return w.wait(50).then((why) => {
      if (why.all || why.entries || why.bundle) results[i] = { ...why };
    });
  });
  notify(payload);
  await Promise.all(waiters);
  return results;
}

describe('change notifications say what changed', () => {
  it('round-trips each kind, and falls back to the whole trust domain when too large', () => {
    expect(decodeChange(encodeChange({ kind: 'entries', trustDomain: 'a.test', parents: ['p', 'q', 'p'] }))).toEqual({ kind: 'entries', trustDomain: 'a.test', parents: ['p', 'q'] });
    expect(decodeChange(encodeChange({ kind: 'node', trustDomain: 'a.test', node: 'n' }))).toEqual({ kind: 'node', trustDomain: 'a.test', node: 'n' });
    expect(decodeChange(encodeChange({ kind: 'bundle', trustDomain: 'a.test' }))).toEqual({ kind: 'bundle', trustDomain: 'a.test' });
    expect(decodeChange(encodeChange({ kind: 'trust-domain', trustDomain: 'a.test' }))).toEqual({ kind: 'trust-domain', trustDomain: 'a.test' });
    const many = Array.from({ length: 400 }, (_, i) => `spiffe://a.test/some/rather/long/parent/${i}`);
    const payload = encodeChange({ kind: 'entries', trustDomain: 'a.test', parents: many });
    expect(Buffer.byteLength(payload)).toBeLessThan(8000); // PostgreSQL's limit for a NOTIFY payload
    expect(decodeChange(payload)).toEqual({ kind: 'trust-domain', trustDomain: 'a.test' });
  });

  it('reads what an older replica sends (a bare trust-domain name), a reconnect and garbage as "anything"', () => {
    for (const p of ['a.test', '', '{', '{"p":[1]}', '[]', '{"td":7}']) expect(decodeChange(p)).toEqual({ kind: 'unknown' });
  });
});

describe('ChangeFeed wakes only the long-polls a change concerns', () => {
  it('entries wake the agents serving their parents, directly or through a node alias', async () => {
    const { feed, notify } = await feedWith();
    const r = await woken(notify, feed, encodeChange({ kind: 'entries', trustDomain: 'a.test', parents: ['spiffe://a.test/alias/x'] }));
    expect(r).toEqual([{ entries: true, bundle: false, all: false }, undefined, undefined]);
  });

  it("a node alias's own definition (an entry under the server) wakes its whole trust domain", async () => {
    const { feed, notify } = await feedWith();
    const r = await woken(notify, feed, encodeChange({ kind: 'entries', trustDomain: 'a.test', parents: [server('a.test')] }));
    expect(r.map((w) => w?.all)).toEqual([true, true, undefined]);
  });

  it('a re-attestation wakes that node; a trust-domain change that trust domain', async () => {
    const { feed, notify } = await feedWith();
    expect((await woken(notify, feed, encodeChange({ kind: 'node', trustDomain: 'a.test', node: 'spiffe://a.test/node/2' }))).map((w) => w?.all)).toEqual([undefined, true, undefined]);
    expect((await woken(notify, feed, encodeChange({ kind: 'trust-domain', trustDomain: 'b.test' }))).map((w) => w?.all)).toEqual([undefined, undefined, true]);
  });

  it('a bundle change wakes every trust domain (agents may federate with a bundle hosted here), for the bundle only', async () => {
    const { feed, notify } = await feedWith();
    const r = await woken(notify, feed, encodeChange({ kind: 'bundle', trustDomain: 'a.test' }));
    expect(r).toEqual([0, 1, 2].map(() => ({ entries: false, bundle: true, all: false })));
  });

  it('an older replica, a reconnected listener or garbage wakes everyone for everything', async () => {
    const { feed, notify } = await feedWith();
    for (const p of ['a.test', '', 'not json']) expect((await woken(notify, feed, p)).map((w) => w?.all)).toEqual([true, true, true]);
  });

  it('a waiter that is cancelled or done leaves no index behind', async () => {
    const { feed } = await feedWith();
    const w = feed.arm('a.test', 'n');
    w.watch(['p']);
    expect(feed.waiting).toBe(1);
    await w.wait(1);
    expect(feed.waiting).toBe(0);
  });
});

describe('ChangeFeed.shared', () => {
  it('reuses one read until a notification, and reads every time while the listener is down', async () => {
    const { feed, notify, lose } = await feedWith();
    let loads = 0;
    const load = async (): Promise<number> => ++loads;
    const g = feed.arm('a.test', 'n');
    g.cancel();
    expect(await feed.shared('k', g.generation, load)).toBe(1);
    expect(await feed.shared('k', g.generation, load)).toBe(1);
    notify(encodeChange({ kind: 'entries', trustDomain: 'a.test', parents: ['p'] }));
    const later = feed.arm('a.test', 'n');
    later.cancel();
    expect(await feed.shared('k', later.generation, load)).toBe(2);
    lose();
    expect(await feed.shared('k', later.generation, load)).toBe(3);
    expect(await feed.shared('k', later.generation, load)).toBe(4);
    notify(''); // back: the reconnect is one notification
    expect(await feed.shared('k', later.generation, load)).toBe(5);
    expect(await feed.shared('k', later.generation, load)).toBe(5);
  });

  it('does not keep a failed read', async () => {
    const { feed } = await feedWith();
    let calls = 0;
    const failing = (): Promise<number> => (++calls === 1 ? Promise.reject(new Error('store down')) : Promise.resolve(calls));
    await expect(feed.shared('k', 0, failing)).rejects.toThrow('store down');
    expect(await feed.shared('k', 0, failing)).toBe(2);
  });
});

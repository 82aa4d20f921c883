import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPaths, type SyncResponse } from '../../contract/agent-api.js';
import { parentsFrom, serverId } from '../../ca/enrollment/service.js';
import type { AttestedNode } from '../../ca/nodes/store.js';
import { redeem, type TestNode } from '../support/agent-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { waitFor } from '../support/wait.js';

const TD = 'fleet.test';
const SERVER = `spiffe://${TD}/cairn/server`;

/** Counts calls to some methods of an object (the CA's stores) until restored. */
function countCalls<T extends object>(target: T, methods: (keyof T & string)[]): { total: () => number; restore: () => void } {
  let n = 0;
  const originals = methods.map((m) => [m, target[m]] as const);
  for (const [m, f] of originals) {
    (target as Record<string, unknown>)[m] = (...args: unknown[]) => {
      n++;
      return (f as (...a: unknown[]) => unknown).apply(target, args);
    };
  }
  return {
    total: () => n,
    restore: () => {
      for (const [m, f] of originals) (target as Record<string, unknown>)[m] = f;
    },
  };
}

describe(`sync for a fleet: a change wakes only the long-polls it concerns (${storeKind()} store)`, () => {
  let ca: TestCa;
  const entry = async (body: Record<string, unknown>): Promise<{ id: string; revision: number }> => {
    const res = await ca.admin('/v1/entries', { body });
    expect(res.status, JSON.stringify(await res.clone().json())).toBe(201);
    return res.json();
  };
  const attest = async (selectors: string[] = []): Promise<TestNode> => {
    const res = await ca.admin('/v1/tokens', { body: { trustDomain: TD, selectors } });
    const r = await redeem((await res.json()).token);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.node!;
  };
  const sync = async (node: TestNode, revision: number, bundleSequence: number, wait = 0): Promise<SyncResponse> => {
    const res = await node.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=${revision}&bundleSequence=${bundleSequence}&wait=${wait}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  /** Every node starts a 60 s long-poll from its current state; resolves once all of them wait. */
  const holdPolls = async (nodes: TestNode[]): Promise<Promise<SyncResponse>[]> => {
    const firsts = await Promise.all(nodes.map((n) => sync(n, 0, 0)));
    const waiting = ca.core.feed.waiting;
    const polls = nodes.map((n, i) => sync(n, firsts[i]!.revision, firsts[i]!.bundle!.sequence, 60));
    await waitFor(`every long-poll waiting (${nodes.length} more than ${waiting})`, () => (ca.core.feed.waiting === waiting + nodes.length ? true : undefined));
    return polls;
  };

  beforeAll(async () => {
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
    // revision 0 is a full sync, which never waits: start the store past it
    await entry({ spiffeId: `spiffe://${TD}/elsewhere`, parentId: `spiffe://${TD}/some/other/node`, selectors: ['unix:uid:1'] });
  });
  afterAll(() => ca.close());

  it("one agent's entry wakes that agent only, and costs one round of reads", async () => {
    const nodes = await Promise.all(Array.from({ length: 8 }, () => attest(['join_token:pool-one'])));
    const polls = await holdPolls(nodes);
    const waiting = ca.core.feed.waiting;
    const reads = countCalls(ca.core.stores.entries, ['changedSince', 'removedSince', 'aliasEntries']);
    try {
      const mine = await entry({ spiffeId: `spiffe://${TD}/only-mine`, parentId: nodes[3]!.spiffeId, selectors: ['unix:uid:7'] });
      const answer = await polls[3]!;
      expect(answer.entries.map((e) => e.id)).toEqual([mine.id]);
      // the other seven keep waiting: before, every notification woke every long-poll of the process
      expect(ca.core.feed.waiting).toBe(waiting - 1);
      expect(reads.total()).toBeLessThanOrEqual(2);
    } finally {
      reads.restore();
    }
    // a change under the node alias they share reaches them all
    await entry({ spiffeId: `spiffe://${TD}/pool-one`, parentId: SERVER, selectors: ['join_token:pool-one'] });
    const rest = await Promise.all(polls.filter((_, i) => i !== 3));
    for (const r of rest) expect(r.parents).toContain(`spiffe://${TD}/pool-one`);
  });

  it('a change under an alias every waiting agent shares costs one read of each kind for all of them', async () => {
    const pool = `spiffe://${TD}/pool/shared`;
    await entry({ spiffeId: pool, parentId: SERVER, selectors: ['join_token:pool-shared'] });
    const nodes = await Promise.all(Array.from({ length: 12 }, () => attest(['join_token:pool-shared'])));
    const polls = await holdPolls(nodes);
    const entryReads = countCalls(ca.core.stores.entries, ['changedSince', 'removedSince', 'federatedWith']);
    try {
      const shared = await entry({ spiffeId: `spiffe://${TD}/daemon`, parentId: pool, selectors: ['unix:uid:1'] });
      const answers = await Promise.all(polls);
      for (const a of answers) expect(a.entries.map((e) => e.id)).toEqual([shared.id]);
      // 36 before: three reads per woken agent
      expect(entryReads.total()).toBeLessThanOrEqual(6);
    } finally {
      entryReads.restore();
    }
  });

  it('a change that wakes many waiting agents answers them a slice per turn of the event loop, not in one burst', async () => {
    const pool = `spiffe://${TD}/pool/wide`;
    await entry({ spiffeId: pool, parentId: SERVER, selectors: ['join_token:pool-wide'] });
    const nodes = await Promise.all(Array.from({ length: 250 }, () => attest(['join_token:pool-wide'])));
    // the turn of the event loop each answer leaves the sync service in, counted by a ticker
    let turn = 0;
    let ticking = true;
    const tick = (): void => {
      turn++;
      if (ticking) setImmediate(tick);
    };
    const answeredIn: number[] = [];
    const service = ca.core.sync;
    const original = service.sync;
    service.sync = async (...args) => {
      const answer = await original.apply(service, args);
      answeredIn.push(turn);
      return answer;
    };
    try {
      const polls = await holdPolls(nodes);
      answeredIn.length = 0;
      setImmediate(tick);
      await entry({ spiffeId: `spiffe://${TD}/wide-daemon`, parentId: pool, selectors: ['unix:uid:1'] });
      await Promise.all(polls);
    } finally {
      ticking = false;
      service.sync = original;
    }
    expect(answeredIn).toHaveLength(250);
    const perTurn = new Map<number, number>();
    for (const t of answeredIn) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
    // all 250 left in one turn before: the replica answered nothing else until the last was written
    expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(100);
    expect(perTurn.size).toBeGreaterThanOrEqual(3);
  });

  it("agents syncing together each get their own entries and nobody else's", async () => {
    const nodes = await Promise.all(Array.from({ length: 6 }, () => attest()));
    const own = await Promise.all(nodes.map(async (n, i) => {
      const ids: string[] = [];
      for (let k = 0; k <= i; k++) ids.push((await entry({ spiffeId: `spiffe://${TD}/own/${i}/${k}`, parentId: n.spiffeId, selectors: [`unix:uid:${100 + k}`] })).id);
      return ids.sort();
    }));
    for (let round = 0; round < 3; round++) {
      const fulls = await Promise.all(nodes.map((n) => sync(n, 0, 0)));
      fulls.forEach((f, i) => expect(f.entries.map((e) => e.id).sort()).toEqual(own[i]));
    }
    // and incrementally, from one revision, with removals
    const base = (await sync(nodes[0]!, 0, 0)).revision;
    const gone = await Promise.all(nodes.map(async (n, i) => {
      const id = own[i]![0]!;
      expect((await ca.admin(`/v1/entries/${id}`, { method: 'DELETE' })).status).toBeLessThan(300);
      return id;
    }));
    const incs = await Promise.all(nodes.map((n) => sync(n, base, 0)));
    incs.forEach((r, i) => expect(r.removed).toEqual([gone[i]]));
  });

  it('a bundle change every waiting agent receives re-reads the bundle once, and no entries', async () => {
    const agents = 10;
    const nodes = await Promise.all(Array.from({ length: agents }, () => attest()));
    const polls = await holdPolls(nodes);
    const entryReads = countCalls(ca.core.stores.entries, ['changedSince', 'removedSince', 'aliasEntries', 'latestRevision']);
    const bundleReads = countCalls(ca.core.authority, ['published']);
    try {
      expect((await ca.admin(`/v1/trust-domains/${TD}/authorities/prepare`, { method: 'POST', body: { kind: 'x509' } })).status).toBe(201);
      const answers = await Promise.all(polls);
      const sequences = new Set(answers.map((a) => a.bundle?.sequence));
      expect(sequences.size).toBe(1);
      expect([...sequences][0]).toBeGreaterThan(0);
      for (const a of answers) expect(a.bundle!.x509Authorities.length).toBe(2);
      expect(entryReads.total()).toBe(0);
      // shared by every woken long-poll (a second read only if a notification came in between)
      expect(bundleReads.total()).toBeLessThanOrEqual(3);
    } finally {
      entryReads.restore();
      bundleReads.restore();
    }
  });

  it("an agent already holding the newest revision costs no entry reads (a quiet fleet's idle polls)", async () => {
    const [node] = await Promise.all([attest()]);
    const first = await sync(node!, 0, 0);
    const reads = countCalls(ca.core.stores.entries, ['changedSince', 'removedSince', 'federatedWith']);
    try {
      const again = await sync(node!, first.revision, first.bundle!.sequence, 0);
      expect(again.entries).toEqual([]);
      expect(reads.total()).toBe(0);
      // one revision behind, it reads (and gets what it missed)
      const made = await entry({ spiffeId: `spiffe://${TD}/missed`, parentId: node!.spiffeId, selectors: ['unix:uid:9'] });
      const caughtUp = await sync(node!, first.revision, first.bundle!.sequence, 0);
      expect(caughtUp.entries.map((e) => e.id)).toEqual([made.id]);
      expect(reads.total()).toBeGreaterThan(0);
    } finally {
      reads.restore();
    }
  });

  it('a waiting agent hears at once that a new node alias gave it another parent', async () => {
    const rack = `spiffe://${TD}/racks/r9`;
    const agent = await attest(['join_token:rack-r9']);
    const service = await entry({ spiffeId: `spiffe://${TD}/rack-service`, parentId: rack, selectors: ['unix:uid:2'] });
    const [poll] = await holdPolls([agent]);
    const started = Date.now();
    await entry({ spiffeId: rack, parentId: SERVER, selectors: ['join_token:rack-r9'] });
    const woke = await poll!;
    // it used to wait out the whole long-poll: the alias's entries are older than the agent's revision
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(woke.parents).toEqual([agent.spiffeId, rack]);
    const again = await sync(agent, 0, 0); // the agent takes the complete set when its parents change
    expect(again.entries.map((e) => e.id)).toEqual([service.id]);
  });

  it('a poll that starts after an alias changed is answered at once, the parents the agent holds being stale', async () => {
    const rack = `spiffe://${TD}/racks/r10`;
    const agent = await attest(['join_token:rack-r10']);
    const first = await sync(agent, 0, 0);
    expect(first.parents).toEqual([agent.spiffeId]);
    // the alias commits while the agent is between polls: its next poll's first read already sees it
    const alias = await entry({ spiffeId: rack, parentId: SERVER, selectors: ['join_token:rack-r10'] });
    const started = Date.now();
    const next = await sync(agent, first.revision, first.bundle!.sequence, 60);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(next.parents).toEqual([agent.spiffeId, rack]);
    // at the new revision nothing is stale: the poll waits (ended here by a change of the agent's own)
    const waiting = sync(agent, next.revision, first.bundle!.sequence, 60);
    await waitFor('the poll waiting', () => (ca.core.feed.waiting > 0 ? true : undefined));
    const own = await entry({ spiffeId: `spiffe://${TD}/r10-service`, parentId: agent.spiffeId, selectors: ['unix:uid:3'] });
    expect((await waiting).entries.map((e) => e.id)).toEqual([own.id]);
    // and a removed alias, the same
    const before = await sync(agent, 0, 0);
    expect((await ca.admin(`/v1/entries/${alias.id}`, { method: 'DELETE' })).status).toBeLessThan(300);
    const t1 = Date.now();
    const after = await sync(agent, before.revision, first.bundle!.sequence, 60);
    expect(Date.now() - t1).toBeLessThan(30_000);
    expect(after.parents).toEqual([agent.spiffeId]);
  });

  it("a fleet's requests arriving together are authenticated with a few queries, each against its own node's record", async () => {
    const nodes = await Promise.all(Array.from({ length: 30 }, () => attest()));
    const revoked = nodes[7]!;
    const res = await ca.admin('/v1/x509-svids/revoke', { body: { serial: revoked.svid.serial, reason: 'test' } });
    expect(res.status, JSON.stringify(await res.clone().json())).toBe(200);
    await Promise.all(nodes.map((n) => n.call('GET', `${AgentPaths.sync}?revision=0&bundleSequence=0&wait=0`))); // connections open
    const records = countCalls(ca.core.stores.nodes, ['get', 'getMany']);
    try {
      const answers = await Promise.all(nodes.map((n) => n.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=0&bundleSequence=0&wait=0`)));
      answers.forEach((a, i) => {
        if (i === 7) expect(a).toMatchObject({ status: 401, body: { code: 'svid_revoked' } });
        else expect(a.status, JSON.stringify(a.body)).toBe(200);
        if (i !== 7) expect(a.body.parents[0]).toBe(nodes[i]!.spiffeId);
      });
      // 30 before: one read of its node's record per request
      expect(records.total()).toBeLessThanOrEqual(6);
    } finally {
      records.restore();
    }
  }, 120_000);

  it("a re-attestation wakes that node's long-poll, not the trust domain's", async () => {
    const nodes = await Promise.all(Array.from({ length: 4 }, () => attest()));
    const polls = await holdPolls(nodes);
    const waiting = ca.core.feed.waiting;
    const heard = ca.core.feed.heard;
    const reads = countCalls(ca.core.stores.entries, ['changedSince', 'removedSince', 'aliasEntries']);
    try {
      await attest(); // another node joins: it notifies, and nobody else has anything to re-read
      await waitFor('the join notified', () => (ca.core.feed.heard > heard ? true : undefined));
      await new Promise((r) => setTimeout(r, 200)); // a woken long-poll would have re-read by now
      expect(reads.total()).toBe(0);
    } finally {
      reads.restore();
    }
    expect(ca.core.feed.waiting).toBe(waiting);
    ca.core.feed.endLongPolls();
    await Promise.all(polls);
  });
});

describe('node aliases: the shared-read rule and the SQL rule agree', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
  });
  afterAll(() => ca.close());

  it('for every node of a selector matrix', async () => {
    const pool = ['join_token:a1', 'join_token:a2', 'join_token:b1', 'join_token:b2', 'join_token:c1'];
    const subsets = (n: number): string[][] => Array.from({ length: 2 ** n }, (_, m) => pool.slice(0, n).filter((_, i) => m & (1 << i)));
    const aliasSelectors = subsets(4).filter((s) => s.length > 0);
    for (const [i, selectors] of aliasSelectors.entries()) {
      expect((await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/alias/${i}`, parentId: SERVER, selectors } })).status).toBe(201);
    }
    // one alias defined twice with different selectors
    expect((await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/alias/0`, parentId: SERVER, selectors: ['join_token:c1'] } })).status).toBe(201);
    const { aliases } = await ca.core.stores.entries.aliasEntries(TD, serverId(TD));
    for (const selectors of subsets(5)) {
      const node = { spiffeId: `spiffe://${TD}/node/x`, trustDomain: TD, selectors } as unknown as AttestedNode;
      expect(parentsFrom(node, aliases)).toEqual(await ca.core.enrollment.parentsOf(node));
    }
  });
});

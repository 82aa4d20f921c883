import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPaths, type SyncResponse } from '../../contract/agent-api.js';
import { MAX_ENTRY_BATCH } from '../../contract/admin-api.js';
import { CHANGE_CHANNEL } from '../../ca/db/changes.js';
import { redeem, type TestNode } from '../support/agent-client.js';
import { callAs, createAdmin } from '../support/admins.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { waitFor } from '../support/wait.js';

const TD = 'batch.test';
const OTHER = 'other.batch.test';

/** POST /v1/entries/batch: many entries in one request and one transaction, each item succeeding or failing alone. */
describe(`batch entry creation (${storeKind()} store)`, { timeout: 180_000 }, () => {
  let ca: TestCa;
  let node: TestNode;
  let viewer: string;
  const batch = (entries: unknown[], token = ca.adminToken) => callAs(ca, token, 'POST', '/v1/entries/batch', { entries });
  const listed = async (trustDomain: string): Promise<{ id: string; spiffeId: string; revision: number }[]> =>
    (await callAs(ca, ca.adminToken, 'GET', `/v1/entries?trustDomain=${trustDomain}&pageSize=500`)).body.entries;
  const auditRecords = async (action: string): Promise<Record<string, any>[]> =>
    (await ca.handle.db.query<{ data: Uint8Array }>(`SELECT data FROM audit_entries WHERE event = 'admin.action' ORDER BY seq`)).rows
      .map((r) => JSON.parse(Buffer.from(r.data).toString('utf8')) as Record<string, any>)
      .filter((r) => r.action === action);
  const sync = async (revision: number, bundleSequence: number, wait = 0): Promise<SyncResponse> => {
    const res = await node.call<SyncResponse>('GET', `${AgentPaths.sync}?revision=${revision}&bundleSequence=${bundleSequence}&wait=${wait}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };

  beforeAll(async () => {
    ca = await startTestCa();
    for (const name of [TD, OTHER]) expect((await callAs(ca, ca.adminToken, 'POST', '/v1/trust-domains', { name })).status).toBe(201);
    const { body } = await callAs(ca, ca.adminToken, 'POST', '/v1/tokens', { trustDomain: TD });
    node = (await redeem(body.token)).node!;
    viewer = await createAdmin(ca, { name: 'batch-viewer', role: 'viewer' });
  });
  afterAll(() => ca?.close());

  it('answers one result per item in request order, creates exactly the valid items, and records each one', async () => {
    const parent = `spiffe://${TD}/agent/a`;
    const stored = await callAs(ca, ca.adminToken, 'POST', '/v1/entries', { spiffeId: `spiffe://${TD}/stored`, parentId: parent, selectors: ['unix:uid:1'] });
    expect(stored.status).toBe(201);
    const auditBefore = (await auditRecords('entry.create')).length;
    const items = [
      { spiffeId: `spiffe://${TD}/one`, parentId: parent, selectors: ['unix:uid:10'] },
      { spiffeId: `spiffe://${TD}/ttl`, parentId: parent, selectors: ['unix:uid:11'], x509SvidTtl: '1h' }, // schema: not an integer
      { spiffeId: 'not-a-spiffe-id', parentId: parent, selectors: ['unix:uid:12'] },
      { spiffeId: 'spiffe://nowhere.test/x', parentId: 'spiffe://nowhere.test/agent', selectors: ['unix:uid:13'] },
      { spiffeId: `spiffe://${TD}/stored`, parentId: parent, selectors: ['unix:uid:1'] }, // a stored entry's identity
      { spiffeId: `spiffe://${TD}/two`, parentId: parent, selectors: ['unix:uid:20', 'unix:gid:20'], dnsNames: ['two.example'], hint: 'internal' },
      { spiffeId: `spiffe://${TD}/two`, parentId: parent, selectors: ['unix:gid:20', 'unix:uid:20'] }, // item 5 again (selectors in another order)
      { spiffeId: `spiffe://${TD}/bad-selector`, parentId: parent, selectors: ['Unix:uid'] },
      { spiffeId: `spiffe://${OTHER}/three`, parentId: `spiffe://${OTHER}/agent/b`, selectors: ['unix:uid:30'], x509SvidTtl: 600 },
      { spiffeId: `spiffe://${TD}/fed`, parentId: parent, selectors: ['unix:uid:40'], federatesWith: ['unknown.partner.test'] },
    ];
    const res = await batch(items);
    expect(res.status, JSON.stringify(res.body) + ca.logs().split('\n').filter((l) => l.includes('request failed')).join('\n')).toBe(200);
    const results: { entry?: Record<string, any>; error?: { code: string; message: string; details?: Record<string, unknown> } }[] = res.body.results;
    expect(results).toHaveLength(items.length);
    const codes = results.map((r) => r.error?.code ?? 'created');
    expect(codes).toEqual(['created', 'invalid_request', 'invalid_spiffe_id', 'trust_domain_not_found', 'entry_exists', 'created', 'entry_exists', 'invalid_selector', 'created', 'unknown_federated_trust_domain']);
    // the messages are the single create's
    expect(results[1]!.error!.message).toMatch(/x509SvidTtl/);
    expect(results[4]!.error!.details).toEqual({ existingId: stored.body.id });
    expect(results[6]!.error!.details).toEqual({ existingId: results[5]!.entry!.id });
    expect(results[5]!.entry).toMatchObject({ spiffeId: `spiffe://${TD}/two`, selectors: ['unix:gid:20', 'unix:uid:20'], dnsNames: ['two.example'], hint: 'internal', trustDomain: TD });
    expect(results[8]!.entry).toMatchObject({ trustDomain: OTHER, x509SvidTtl: 600 });
    for (const r of results.filter((r) => r.entry)) expect(r).not.toHaveProperty('error');

    const created = results.flatMap((r) => (r.entry ? [r.entry] : []));
    // exactly the valid ones exist, once each
    const inTd = await listed(TD);
    expect(inTd.map((e) => e.spiffeId).sort()).toEqual([`spiffe://${TD}/one`, `spiffe://${TD}/stored`, `spiffe://${TD}/two`]);
    expect((await listed(OTHER)).map((e) => e.id)).toEqual([results[8]!.entry!.id]);
    // revisions in request order, all after the stored entry's
    const revisions = created.map((e) => e.revision as number);
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    expect(revisions[0]).toBeGreaterThan(stored.body.revision);

    // the audit log: one entry.create record per created entry, as the single create writes; one failure record per other item
    const records = (await auditRecords('entry.create')).slice(auditBefore);
    const successes = records.filter((r) => r.outcome === 'success');
    expect(successes.map((r) => r.target).sort()).toEqual(created.map((e) => e.id).sort());
    for (const r of successes) {
      const entry = created.find((e) => e.id === r.target)!;
      expect(r).toMatchObject({ actor: 'bootstrap', credential: 'token', trustDomain: entry.trustDomain, new: entry, status: 201 });
    }
    expect(records.filter((r) => r.outcome === 'failure').map((r) => r.code).sort()).toEqual(
      ['entry_exists', 'entry_exists', 'invalid_request', 'invalid_selector', 'invalid_spiffe_id', 'trust_domain_not_found', 'unknown_federated_trust_domain'].sort(),
    );
    // and the single create's own record has the same shape
    const single = (await auditRecords('entry.create')).find((r) => r.target === stored.body.id)!;
    expect(Object.keys(successes[0]!).sort()).toEqual(Object.keys(single).sort());
  });

  it(`refuses more than ${MAX_ENTRY_BATCH} items with a coded 413 before doing anything, and an empty batch with a 400`, async () => {
    const revisionBefore = await ca.core.stores.entries.latestRevision();
    const items = Array.from({ length: MAX_ENTRY_BATCH + 1 }, (_, i) => ({ spiffeId: `spiffe://${TD}/many/${i}`, parentId: `spiffe://${TD}/agent/many`, selectors: [`unix:uid:${i}`] }));
    const res = await batch(items);
    expect(res.status).toBe(413);
    expect(res.body.code).toBe('batch_too_large');
    expect(res.body.message).toMatch(/at most 1000/);
    expect(await ca.core.stores.entries.latestRevision()).toBe(revisionBefore);
    const empty = await batch([]);
    expect(empty.status).toBe(400);
    expect(empty.body.code).toBe('invalid_request');
    // a batch of nothing valid is still answered item by item, and changes nothing
    const none = await batch([{ spiffeId: 'x' }, 7]);
    expect(none.status).toBe(200);
    expect(none.body.results.map((r: { error: { code: string } }) => r.error.code)).toEqual(['invalid_request', 'invalid_request']);
    expect(await ca.core.stores.entries.latestRevision()).toBe(revisionBefore);
    const notArray = await callAs(ca, ca.adminToken, 'POST', '/v1/entries/batch', { entries: { spiffeId: 'x' } });
    expect(notArray.status).toBe(400);
    // `batch` is a route of its own, never an entry ID
    expect((await callAs(ca, ca.adminToken, 'GET', '/v1/entries/batch')).body.code).toBe('entry_not_found');
    expect((await callAs(ca, ca.adminToken, 'DELETE', '/v1/entries/batch')).body.code).toBe('entry_not_found');
  });

  it('is the operator role\'s, as the single create: a viewer is refused and nothing is created', async () => {
    const res = await batch([{ spiffeId: `spiffe://${TD}/viewer-made`, parentId: `spiffe://${TD}/agent/v`, selectors: ['unix:uid:1'] }], viewer);
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('permission_denied');
    expect(res.body.message).toMatch(/operator role/);
    expect((await listed(TD)).map((e) => e.spiffeId)).not.toContain(`spiffe://${TD}/viewer-made`);
    const unauthenticated = await callAs(ca, undefined, 'POST', '/v1/entries/batch', { entries: [] });
    expect(unauthenticated.status).toBe(401);
  });

  it("wakes a waiting agent's long-poll with one notification per trust domain, and the agent receives the batch's entries", async () => {
    const first = await sync(0, 0);
    const waiting = ca.core.feed.waiting;
    const poll = sync(first.revision, first.bundle!.sequence, 60);
    await waitFor('the long-poll waiting', () => (ca.core.feed.waiting === waiting + 1 ? true : undefined));
    const notifications: string[] = [];
    const unlisten = await ca.handle.db.listen(CHANGE_CHANNEL, (payload) => notifications.push(payload));
    try {
      const mine = Array.from({ length: 40 }, (_, i) => ({ spiffeId: `spiffe://${TD}/fleet/${i}`, parentId: node.spiffeId, selectors: [`unix:uid:${1000 + i}`] }));
      const others = Array.from({ length: 10 }, (_, i) => ({ spiffeId: `spiffe://${TD}/elsewhere/${i}`, parentId: `spiffe://${TD}/agent/other-${i % 3}`, selectors: ['unix:uid:1'] }));
      const res = await batch([...mine.slice(0, 20), ...others, ...mine.slice(20), { spiffeId: `spiffe://${OTHER}/x`, parentId: `spiffe://${OTHER}/agent/x`, selectors: ['unix:uid:1'] }]);
      expect(res.status).toBe(200);
      const ids = (res.body.results as { entry?: { id: string; parentId: string } }[]).map((r) => r.entry!).filter((e) => e.parentId === node.spiffeId).map((e) => e.id);
      expect(ids).toHaveLength(40);
      // one transaction: the answer of the poll it woke holds all 40, not the first of them
      const answer = await poll;
      expect(answer.entries.map((e) => e.id).sort()).toEqual([...ids].sort());
      await waitFor('both notifications', () => (notifications.length >= 2 ? true : undefined));
      const payloads = notifications.map((p) => JSON.parse(p) as { td: string; p?: string[] });
      expect(payloads.map((p) => p.td).sort()).toEqual([OTHER, TD].sort());
      const own = payloads.find((p) => p.td === TD)!;
      expect(own.p!.sort()).toEqual([node.spiffeId, `spiffe://${TD}/agent/other-0`, `spiffe://${TD}/agent/other-1`, `spiffe://${TD}/agent/other-2`].sort());
      // and an incremental sync from there is empty: nothing of the batch comes back twice
      const next = await sync(answer.revision, answer.bundle?.sequence ?? first.bundle!.sequence);
      expect(next.entries).toEqual([]);
    } finally {
      await unlisten();
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';

const TD = 'atomic.test';

/**
 * Issue 14: an admin change is appended to the audit log in the same transaction as the change,
 * so a change whose entry cannot be written does not happen. The database itself refuses the
 * entry here (a trigger), exactly where a full disk or a lost connection would.
 */
describe(`admin changes and their audit entries commit together (${storeKind()} store)`, { timeout: 180_000 }, () => {
  let ca: TestCa;
  const json = async (path: string, init?: Parameters<TestCa['admin']>[1]) => {
    const res = await ca.admin(path, init);
    return { status: res.status, body: (await res.json()) as any };
  };
  const events = async (event: string, like: string): Promise<string[]> =>
    (await ca.handle.db.query<{ data: Uint8Array }>(`SELECT data FROM audit_entries WHERE event = $1 AND convert_from(data, 'UTF8') LIKE $2 ORDER BY seq`, [event, `%${like}%`])).rows
      .map((r) => Buffer.from(r.data).toString('utf8'));
  const refuseAdminEntries = async (on: boolean): Promise<void> => {
    if (on) {
      await ca.handle.db.query(`CREATE OR REPLACE FUNCTION test_refuse_admin_entries() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.event = 'admin.action' THEN RAISE EXCEPTION 'audit entry refused (test)'; END IF; RETURN NEW; END $$`);
      await ca.handle.db.query('CREATE TRIGGER test_refuse_admin_entries BEFORE INSERT ON audit_entries FOR EACH ROW EXECUTE FUNCTION test_refuse_admin_entries()');
    } else {
      await ca.handle.db.query('DROP TRIGGER test_refuse_admin_entries ON audit_entries');
    }
  };

  beforeAll(async () => {
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
  });
  afterAll(async () => {
    await ca?.close();
  });

  describe('while the audit log refuses admin entries', () => {
    beforeAll(() => refuseAdminEntries(true));
    afterAll(() => refuseAdminEntries(false));

    it('an entry is not created, and the caller is told 503', async () => {
      const spiffeId = `spiffe://${TD}/refused`;
      const res = await json('/v1/entries', { body: { spiffeId, parentId: `spiffe://${TD}/agent`, selectors: ['unix:uid:1000'] } });
      expect(res.status, JSON.stringify(res.body)).toBe(503);
      expect(res.body.code).toBe('store_unavailable');
      expect(res.body.message).toMatch(/audit log/);
      const listed = await json(`/v1/entries?trustDomain=${TD}`);
      expect(listed.body.entries.map((e: { spiffeId: string }) => e.spiffeId)).not.toContain(spiffeId);
      expect(ca.logs()).toMatch(/a change was rolled back: its audit entry could not be written/);
    });

    it('a trust domain is not changed, and a token is not minted', async () => {
      const before = await json(`/v1/trust-domains/${TD}`);
      const patched = await json(`/v1/trust-domains/${TD}`, { method: 'PATCH', body: { x509SvidTtlSeconds: 420 } });
      expect(patched.status).toBe(503);
      expect((await json(`/v1/trust-domains/${TD}`)).body).toEqual(before.body);
      const tokensBefore = (await ca.handle.db.query<{ n: unknown }>('SELECT count(*) AS n FROM one_time_tokens')).rows[0]!.n;
      const token = await json('/v1/tokens', { body: { trustDomain: TD } });
      expect(token.status).toBe(503);
      expect(JSON.stringify(token.body)).not.toMatch(/"token"/);
      expect((await ca.handle.db.query<{ n: unknown }>('SELECT count(*) AS n FROM one_time_tokens')).rows[0]!.n).toEqual(tokensBefore);
      // the token's own event, written in the token service's transaction, went with it
      expect(await events('token.created', TD)).toEqual([]);
    });

    it('reads are not affected', async () => {
      expect((await json(`/v1/entries?trustDomain=${TD}`)).status).toBe(200);
    });
  });

  it('a change and its record land together; a refused statement inside the request does not poison the rest', async () => {
    const spiffeId = `spiffe://${TD}/kept`;
    const body = { spiffeId, parentId: `spiffe://${TD}/agent`, selectors: ['unix:uid:1001'] };
    const created = await json('/v1/entries', { body });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const records = await events('admin.action', spiffeId);
    expect(records).toHaveLength(1);
    expect(JSON.parse(records[0]!)).toMatchObject({ actor: expect.any(String), action: 'entry.create', outcome: 'success', status: 201 });
    // a unique violation (409) rolls back to its savepoint: the refusal is still recorded in the request's transaction
    const again = await json('/v1/entries', { body });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('entry_exists');
    const after = (await events('admin.action', spiffeId)).map((r) => JSON.parse(r) as { outcome: string; code?: string });
    expect(after).toHaveLength(2);
    expect(after[1]).toMatchObject({ outcome: 'failure', code: 'entry_exists', status: 409 });
  });

  it('concurrent admin writes each commit with their own record', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `spiffe://${TD}/parallel-${i}`);
    const results = await Promise.all(ids.map((spiffeId) => json('/v1/entries', { body: { spiffeId, parentId: `spiffe://${TD}/agent`, selectors: [`unix:uid:${2000 + ids.indexOf(spiffeId)}`] } })));
    expect(results.map((r) => r.status)).toEqual(ids.map(() => 201));
    for (const id of ids) expect(await events('admin.action', `"${id}"`)).toHaveLength(1);
    // and the background integrator numbers them without a gap, with the CA still answering
    const signed = await ca.admin('/v1/audit/checkpoint', { method: 'POST' });
    expect(signed.status).toBe(200);
  });
});

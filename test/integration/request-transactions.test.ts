import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RequestTransactions, type RequestTransaction } from '../../ca/db/request-transactions.js';
import { storeKind, testDatabase, type TestDatabase } from '../support/db.js';

/** The request transaction under the admin API's records (ca/db/request-transactions.ts), on the store itself. */
describe(`request transactions (${storeKind()} store)`, () => {
  let t: TestDatabase;
  let scopes: RequestTransactions;
  const rows = async (): Promise<string[]> => (await t.db.query<{ v: string }>('SELECT v FROM request_tx_test ORDER BY v')).rows.map((r) => r.v);
  /** Runs `work` as a request handler would: inside the scope, through the db every store uses. */
  const inRequest = async (work: () => Promise<void>): Promise<RequestTransaction> => {
    let handler: Promise<void> | undefined;
    const scope = scopes.begin(() => {
      handler = work();
    });
    await handler;
    return scope;
  };

  let open: () => void = () => undefined;
  let gate: Promise<void> = Promise.resolve();
  beforeEach(() => {
    gate = new Promise<void>((resolve) => {
      open = resolve;
    });
  });

  beforeAll(async () => {
    t = await testDatabase({ migrated: false });
    await t.db.query('CREATE TABLE request_tx_test (v text PRIMARY KEY)');
    scopes = new RequestTransactions(t.db);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('holds every query until finish writes the last one, then commits them together', async () => {
    await t.db.query('DELETE FROM request_tx_test');
    const scope = await inRequest(async () => {
      await scopes.db.query(`INSERT INTO request_tx_test VALUES ('a')`);
      await scopes.db.transaction(async (tx) => {
        await tx.query(`INSERT INTO request_tx_test VALUES ('b')`);
      });
    });
    if (storeKind() === 'postgres') expect(await rows()).toEqual([]); // another connection sees nothing yet
    await scope.finish(async (q) => {
      await q.query(`INSERT INTO request_tx_test VALUES ('record')`);
    });
    expect(await rows()).toEqual(['a', 'b', 'record']);
  });

  it('keeps nothing when the last write fails, and says why', async () => {
    await t.db.query('DELETE FROM request_tx_test');
    const scope = await inRequest(async () => {
      await scopes.db.query(`INSERT INTO request_tx_test VALUES ('change')`);
    });
    await expect(scope.finish(async (q) => {
      await q.query(`INSERT INTO request_tx_test VALUES (NULL)`);
    })).rejects.toThrow(/null value/);
    expect(await rows()).toEqual([]);
  });

  it('a failing statement or store transaction rolls back alone; the rest commits', async () => {
    await t.db.query('DELETE FROM request_tx_test');
    await t.db.query(`INSERT INTO request_tx_test VALUES ('taken')`);
    const scope = await inRequest(async () => {
      await scopes.db.query(`INSERT INTO request_tx_test VALUES ('first')`);
      await expect(scopes.db.query(`INSERT INTO request_tx_test VALUES ('taken')`)).rejects.toThrow();
      await expect(scopes.db.transaction(async (tx) => {
        await tx.query(`INSERT INTO request_tx_test VALUES ('inner')`);
        throw new Error('the store changed its mind');
      })).rejects.toThrow(/changed its mind/);
      await Promise.all([scopes.db.query(`INSERT INTO request_tx_test VALUES ('p1')`), scopes.db.query(`INSERT INTO request_tx_test VALUES ('p2')`)]);
    });
    await scope.finish(async () => undefined);
    expect(await rows()).toEqual(['first', 'p1', 'p2', 'taken']);
  });

  it('abandoned (the request ended without finishing): nothing it did is kept', async () => {
    await t.db.query('DELETE FROM request_tx_test');
    const scope = await inRequest(async () => {
      await scopes.db.query(`INSERT INTO request_tx_test VALUES ('half')`);
    });
    await scope.abandon();
    await expect(scope.finish(async () => undefined)).rejects.toThrow(/already ended/);
    expect(await rows()).toEqual([]);
  });

  it('after the commit, a task started in the request uses the database itself', async () => {
    await t.db.query('DELETE FROM request_tx_test');
    let late: Promise<unknown> | undefined;
    const scope = await inRequest(async () => {
      await scopes.db.query('SELECT 1');
      late = gate.then(() => scopes.db.query(`INSERT INTO request_tx_test VALUES ('after')`));
    });
    await scope.finish(async () => undefined);
    open();
    await late;
    expect(await rows()).toEqual(['after']);
  });

  it('a request that made no query writes its last statement on its own', async () => {
    await t.db.query('DELETE FROM request_tx_test');
    const scope = await inRequest(async () => undefined);
    await scope.finish(async (q) => {
      await q.query(`INSERT INTO request_tx_test VALUES ('only')`);
    });
    expect(await rows()).toEqual(['only']);
  });
});

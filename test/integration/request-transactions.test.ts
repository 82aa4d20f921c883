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

  it.runIf(storeKind() === 'postgres')('a burst of requests holds at most its slots of the pool; the rest wait holding nothing, and all finish', async () => {
    await t.db.query('DELETE FROM request_tx_test');
    const capped = new RequestTransactions(t.db, 3);
    const held = async (): Promise<number> =>
      Number((await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_advisory_xact_lock(4242)%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`)).rows[0]!.n);
    // another session holds the lock every request wants (as the entry write lock is held by a long write)
    let lock: () => void = () => undefined;
    await new Promise<void>((ready) => {
      void t.db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock(4242)');
        ready();
        await new Promise<void>((release) => {
          lock = release;
        });
      });
    });
    // each request commits when its handler is done (the advisory lock is the transaction's until then)
    const requests: Promise<void>[] = [];
    for (let i = 0; i < 10; i++) {
      let handler: Promise<void> = Promise.resolve();
      const scope = capped.begin(() => {
        handler = (async () => {
          await capped.db.query('SELECT pg_advisory_xact_lock(4242)');
          await capped.db.query(`INSERT INTO request_tx_test VALUES ('r${i}')`);
        })();
      });
      requests.push(handler.then(() => scope.finish(async () => undefined)));
    }
    try {
      const deadline = Date.now() + 20_000;
      while ((await held()) < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      // three connections wait on the lock; seven requests wait for a slot, holding no connection
      expect(await held()).toBe(3);
    } finally {
      lock();
    }
    await Promise.all(requests);
    expect((await rows()).length).toBe(10);
  });

  it('refuses a cap that is not a whole number of at least one', () => {
    expect(() => new RequestTransactions(t.db, 0)).toThrow(/slots/);
  });
});

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../ca/db/database.js';
import { guard } from '../../ca/db/errors.js';
import { openPostgres } from '../../ca/db/pg.js';
import { createPgDatabase, storeKind } from '../support/db.js';

/**
 * Connections lost under the CA's feet (a database restart, a failover, an idle-session killer):
 * the server-side end of a connection is terminated with pg_terminate_backend while we hold it.
 * Nothing may crash the process (an unhandled 'error' event would), the caller gets a typed
 * store_unavailable, and the NOTIFY listener comes back by itself.
 */
describe.runIf(storeKind() === 'postgres')('PostgreSQL connections lost mid-use', () => {
  let db: Database;
  let url: string;
  let drop: () => Promise<void>;
  let killer: pg.Client;
  beforeAll(async () => {
    ({ url, drop } = await createPgDatabase());
    db = openPostgres({ connectionString: url });
    killer = new pg.Client({ connectionString: url });
    await killer.connect();
  });
  afterAll(async () => {
    await killer.end();
    await db.close();
    await drop();
  });

  const terminate = async (where: string): Promise<number> => {
    const { rows } = await killer.query<{ n: number }>(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE $1`,
      [where],
    );
    return rows[0]!.n;
  };
  const until = async (pred: () => boolean | Promise<boolean>, ms: number): Promise<void> => {
    const t0 = Date.now();
    while (!(await pred())) {
      if (Date.now() - t0 > ms) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  it('a transaction whose connection is terminated between statements fails with store_unavailable, and the pool recovers', async () => {
    const failed = guard(() =>
      db.transaction(async (tx) => {
        await tx.query(`SELECT 'cairn-victim-tx'`);
        await until(async () => (await terminate(`SELECT 'cairn-victim-tx'`)) === 1, 5000);
        await new Promise((r) => setTimeout(r, 200)); // the FATAL arrives while we hold the client, idle
        await tx.query('SELECT 1');
      }),
    );
    await expect(failed).rejects.toMatchObject({ code: 'store_unavailable' });
    // the broken client was destroyed, not pooled: the next transactions work
    for (let i = 0; i < 12; i++) expect(await db.transaction(async (tx) => (await tx.query<{ v: number }>('SELECT 1 AS v')).rows[0]!.v)).toBe(1);
  });

  it('a connection lost at COMMIT fails the transaction with store_unavailable by itself, not with the raw driver error', async () => {
    // no guard() around it: request transactions (ca/db/request-transactions.ts) take the base
    // transaction's error as it is, and a raw one was answered 500 (seen in the PostgreSQL outage test)
    const failed = db.transaction(async (tx) => {
      await tx.query(`SELECT 'cairn-victim-commit'`);
      await until(async () => (await terminate(`SELECT 'cairn-victim-commit'`)) === 1, 5000);
      await new Promise((r) => setTimeout(r, 200)); // the FATAL arrives while we hold the client, idle
    });
    await expect(failed).rejects.toMatchObject({ code: 'store_unavailable' });
    expect(await db.transaction(async (tx) => (await tx.query<{ v: number }>('SELECT 1 AS v')).rows[0]!.v)).toBe(1);
  });

  it('the NOTIFY listener reconnects by itself, signals a possible gap, and hears later notifications', async () => {
    const heard: string[] = [];
    const unlisten = await db.listen('cairn_test_channel', (p) => heard.push(p));
    try {
      await killer.query(`NOTIFY cairn_test_channel, 'one'`);
      await until(() => heard.includes('one'), 5000);
      expect(await terminate('LISTEN %')).toBe(1);
      // the reconnect announces itself with an empty payload: "you may have missed something"
      await until(() => heard.includes(''), 10_000);
      await killer.query(`NOTIFY cairn_test_channel, 'two'`);
      await until(() => heard.includes('two'), 5000);
      expect(heard).toEqual(['one', '', 'two']);
    } finally {
      await unlisten();
    }
    await killer.query(`NOTIFY cairn_test_channel, 'three'`);
    await new Promise((r) => setTimeout(r, 300));
    expect(heard).not.toContain('three');
  });
});

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgres } from '../../ca/db/pg.js';
import type { Database } from '../../ca/db/database.js';
import { RelationshipStore } from '../../ca/federation/store.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';

const TD = 'race.test';
const FOREIGN = 'partner.test';

/**
 * A refresh storing a fetched bundle while an admin deletes the relationship (ca/federation/relationships.ts).
 * The refresh re-reads the relationship in its transaction; read without a lock, the row a concurrent
 * delete was removing was still seen, and the refresh wrote the deleted bundle back: an orphan that
 * agents kept trusting and nothing refreshed (seen as a flaky e2e: the workload never lost the bundle).
 */
describe.runIf(storeKind() === 'postgres')('a federation refresh racing a relationship delete (postgres store)', () => {
  let ca: TestCa;
  let db: Database;
  beforeAll(async () => {
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
    db = openPostgres({ connectionString: ca.databaseUrl! });
    const now = new Date();
    await db.transaction((tx) =>
      new RelationshipStore(db).insert(tx, {
        trustDomain: TD, foreignTrustDomain: FOREIGN, bundleEndpointUrl: 'https://127.0.0.1:1/bundle', profile: 'https_web', endpointSpiffeId: null, webRoots: null,
        nextRefreshAt: now, failures: 0, lastAttemptAt: null, lastRefreshAt: null, lastError: null, createdAt: now, createdBy: 'test',
      }),
    );
  });
  afterAll(async () => {
    await db?.close();
    await ca?.close();
  });

  it("waits out a delete in flight and then finds no relationship, so it stores nothing", async () => {
    const deleter = new pg.Client({ connectionString: ca.databaseUrl });
    await deleter.connect();
    try {
      await deleter.query('BEGIN');
      await deleter.query('DELETE FROM federation_relationships WHERE trust_domain = $1 AND foreign_trust_domain = $2', [TD, FOREIGN]);
      let settled = false;
      // what the refresh does before it stores a bundle
      const seen = db.transaction((tx) => new RelationshipStore(db).get(TD, FOREIGN, tx, true)).finally(() => {
        settled = true;
      });
      await new Promise((r) => setTimeout(r, 500));
      expect(settled).toBe(false); // it waits for the delete to end, rather than read the row it removes
      await deleter.query('COMMIT');
      expect(await seen).toBeUndefined();
    } finally {
      await deleter.end();
    }
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentPaths, type X509SvidMessage } from '../../contract/agent-api.js';
import { parseBootstrapToken } from '../../contract/bootstrap-token.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson } from '../../lib/tls-client.js';
import { pemBundle, pemChain, redeem, TestNode } from '../support/agent-client.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { opensslVerify } from '../support/openssl.js';
import { freePort, spawnCairn, type Spawned } from '../support/processes.js';

const TD = 'inflight.test';

/**
 * Fault: the CA is killed (SIGKILL) at an exact point inside one issuance. The test holds a table
 * lock so the CA's transaction stops right before a chosen write, sees it waiting there in
 * pg_stat_activity, and kills the process. Whatever the point, the issuance must be either not
 * recorded at all (the token unspent, no inventory row, no node: the client retries) or complete
 * (and then a lost answer can be fetched again with the same key) — never half-recorded.
 */
describe.runIf(storeKind() === 'postgres')('fault: the CA killed at an exact point inside an issuance', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-inflight-'));
  let ca: Spawned | undefined;
  let drop: (() => Promise<void>) | undefined;
  let db: pg.Client | undefined;
  let locker: pg.Client | undefined;
  afterAll(async () => {
    await ca?.stop();
    await db?.end();
    await locker?.end().catch(() => undefined);
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is never half-recorded: killed before its commit it leaves no trace and is retried; killed after, it is complete and answered again', { timeout: 180_000 }, async () => {
    const created = await createPgDatabase();
    drop = created.drop;
    const kek = join(dir, 'kek');
    writeFileSync(kek, Buffer.alloc(32, 7).toString('base64'), { mode: 0o600 });
    const adminToken = 'cairn-admin.' + 'k'.repeat(43);
    const [http, tls] = [await freePort(), await freePort()];
    const startCa = async (): Promise<Spawned> => {
      const p = spawnCairn(['ca', 'start', '--listen', `127.0.0.1:${http}`, '--tls-listen', `127.0.0.1:${tls}`], {
        CAIRN_DATA_DIR: join(dir, 'ca'), DATABASE_URL: created.url, CAIRN_KEK_FILE: kek, CAIRN_ADMIN_TOKEN: adminToken, CAIRN_SERVER: undefined, CAIRN_LOG_LEVEL: 'warn',
      });
      await p.waitFor(/listening on/, 60_000);
      return p;
    };
    const admin = async <T>(path: string, body?: unknown): Promise<{ status: number; body: T }> => {
      const res = await fetch(`http://127.0.0.1:${http}${path}`, { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      return { status: res.status, body: (await res.json()) as T };
    };
    ca = await startCa();
    expect((await admin('/v1/trust-domains', { name: TD })).status).toBe(201);
    const newToken = async (): Promise<{ token: string; id: string; spiffeId: string }> => (await admin<{ token: string; id: string; spiffeId: string }>('/v1/tokens', { trustDomain: TD })).body;
    db = new pg.Client({ connectionString: created.url });
    locker = new pg.Client({ connectionString: created.url });
    for (const c of [db, locker]) {
      c.on('error', () => undefined); // the database is dropped WITH (FORCE) at the end
      await c.connect();
    }
    const lockerClient = locker;
    const q = async <R extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<R[]> => (await db!.query<R>(sql, params)).rows;
    const until = async (what: string, pred: () => Promise<boolean>, ms = 15_000): Promise<void> => {
      const t0 = Date.now();
      while (!(await pred())) {
        if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const others = async (): Promise<number> =>
      Number((await q<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), $1)`, [(lockerClient as unknown as { processID: number }).processID]))[0]!.n);

    /**
     * Holds `table` locked, starts `work`, waits until a CA backend is blocked on that lock running
     * a statement like `pattern`, kills the CA, lets go of the lock, and waits until the dead
     * client's transaction is gone (rolled back: it never sent COMMIT).
     */
    const killWhileWaitingOn = async (table: string, pattern: string, work: () => Promise<unknown>): Promise<void> => {
      const locker = lockerClient;
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${table} IN EXCLUSIVE MODE`);
      const inFlight = work().catch(() => undefined); // the connection dies with the CA
      await until(`a CA transaction blocked before ${pattern}`, async () =>
        (await q(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE $1`, [pattern])).length > 0,
      );
      ca!.child.kill('SIGKILL');
      expect(await ca!.stop()).toBe(null);
      await locker.query('ROLLBACK');
      await inFlight;
      await until('the killed CA\'s sessions to end', async () => (await others()) === 0);
      ca = await startCa();
    };

    const { pin } = (await admin<{ pin: string }>('/v1/ca/tls')).body;
    const authority = await fetchPinnedAuthority(`https://127.0.0.1:${tls}`, pin);
    const attest = (token: string, csr: Buffer) => requestJson<X509SvidMessage>('POST', `https://127.0.0.1:${tls}${AgentPaths.attest}`, { token, csr: csr.toString('base64') }, { ca: authority, timeoutMs: 30_000 });
    const noTrace = async (t: { id: string; spiffeId: string }): Promise<void> => {
      expect(await q(`SELECT used_at, issued_svid FROM one_time_tokens WHERE id = $1`, [t.id])).toEqual([{ used_at: null, issued_svid: null }]);
      expect(await q(`SELECT serial FROM issued_x509_svids WHERE spiffe_id = $1`, [t.spiffeId])).toEqual([]);
      expect(await q(`SELECT spiffe_id FROM attested_nodes WHERE spiffe_id = $1`, [t.spiffeId])).toEqual([]);
    };
    const complete = async (t: { id: string; spiffeId: string }, svid: X509SvidMessage): Promise<void> => {
      expect(opensslVerify(pemChain(svid), pemBundle(svid))).toContain('OK');
      expect((await q<{ serial: string }>(`SELECT serial FROM issued_x509_svids WHERE spiffe_id = $1`, [t.spiffeId])).map((r) => r.serial)).toEqual([svid.serial]);
      expect(await q(`SELECT serial, new_serial FROM attested_nodes WHERE spiffe_id = $1`, [t.spiffeId])).toEqual([{ serial: svid.serial, new_serial: null }]);
      expect((await q<{ used: boolean }>(`SELECT used_at IS NOT NULL AND issued_svid IS NOT NULL AS used FROM one_time_tokens WHERE id = $1`, [t.id]))[0]!.used).toBe(true);
    };

    // The three points inside a redemption's transaction, each killed there: nothing may remain.
    const points = [
      ['one_time_tokens', 'UPDATE one_time_tokens%', 'before the token is spent'],
      ['issued_x509_svids', 'INSERT INTO issued_x509_svids%', 'token spent and SVID signed, before its inventory row'],
      ['attested_nodes', 'INSERT INTO attested_nodes%', 'inventory row written, before the node record'],
    ] as const;
    for (const [table, pattern, where] of points) {
      const t = await newToken();
      const key = generateKeyAndCsr('ec-p256');
      await killWhileWaitingOn(table, pattern, () => attest(t.token, key.csr));
      await noTrace(t).catch((err: Error) => {
        throw new Error(`killed ${where}: ${err.message}`);
      });
      // the node retries (the token is unspent) and gets a complete issuance
      const retried = await attest(t.token, key.csr);
      expect(retried.status, `${where}: ${JSON.stringify(retried.body)}`).toBe(201);
      await complete(t, retried.body);
    }

    // Killed after the commit, with the answer lost on the way: complete, and the same key gets the
    // same SVID again (nothing new is signed); any other key is refused.
    {
      const t = await newToken();
      const key = generateKeyAndCsr('ec-p256');
      const req = httpsRequest(`https://127.0.0.1:${tls}${AgentPaths.attest}`, { method: 'POST', ca: authority, headers: { 'content-type': 'application/json' } });
      req.on('error', () => undefined);
      req.on('response', (res) => res.destroy()); // never read: the answer is lost either way
      req.end(JSON.stringify({ token: t.token, csr: key.csr.toString('base64') }));
      await until('the redemption to commit', async () => (await q(`SELECT 1 FROM attested_nodes WHERE spiffe_id = $1`, [t.spiffeId])).length > 0);
      ca.child.kill('SIGKILL');
      await ca.stop();
      req.destroy();
      ca = await startCa();
      const recorded = (await q<{ serial: string }>(`SELECT serial FROM issued_x509_svids WHERE spiffe_id = $1`, [t.spiffeId])).map((r) => r.serial);
      expect(recorded).toHaveLength(1);
      expect((await attest(t.token, generateKeyAndCsr('ec-p256').csr)).status).toBe(401);
      const again = await attest(t.token, key.csr);
      expect(again.status, JSON.stringify(again.body)).toBe(201);
      expect(again.body.serial).toBe(recorded[0]);
      await complete(t, again.body);
    }

    // A renewal over mTLS killed between signing and its inventory row: the node's record is
    // untouched (its current SVID still works) and the retry completes.
    {
      const t = await newToken();
      const first = await redeem(t.token);
      expect(first.status).toBe(201);
      const node = first.node!;
      const renewKey = generateKeyAndCsr('ec-p256');
      await killWhileWaitingOn('issued_x509_svids', 'INSERT INTO issued_x509_svids%', () => new TestNode(node.url, node.authorityPem, node.svid, node.keyPem).call('POST', AgentPaths.renew, { csr: renewKey.csr.toString('base64') }));
      expect(await q(`SELECT serial, new_serial FROM attested_nodes WHERE spiffe_id = $1`, [t.spiffeId])).toEqual([{ serial: node.svid.serial, new_serial: null }]);
      expect((await q(`SELECT serial FROM issued_x509_svids WHERE spiffe_id = $1`, [t.spiffeId])).length).toBe(1);
      const retried = await new TestNode(node.url, node.authorityPem, node.svid, node.keyPem).call<X509SvidMessage>('POST', AgentPaths.renew, { csr: renewKey.csr.toString('base64') });
      expect(retried.status, JSON.stringify(retried.body)).toBe(201);
      expect(await q(`SELECT new_serial FROM attested_nodes WHERE spiffe_id = $1`, [t.spiffeId])).toEqual([{ new_serial: retried.body.serial }]);
      expect((await q(`SELECT serial FROM issued_x509_svids WHERE spiffe_id = $1`, [t.spiffeId])).length).toBe(2);
    }
    expect(parseBootstrapToken((await newToken()).token).claims.td).toBe(TD);
  });
});

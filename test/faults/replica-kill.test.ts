import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { X509SvidMessage } from '../../contract/agent-api.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson } from '../../lib/tls-client.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { freePort, spawnCairn, type Spawned } from '../support/processes.js';

/**
 * Fault: two CA replicas on one PostgreSQL; one is killed with SIGKILL in the middle of a burst of
 * token redemptions (every token raced on both replicas) and admin signings. No token may be
 * redeemed twice, and every SVID a client received must have its inventory row.
 */
describe.runIf(storeKind() === 'postgres')('fault: one of two CA replicas killed during a redemption and signing burst', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-replicas-'));
  const procs: Spawned[] = [];
  let drop: (() => Promise<void>) | undefined;
  afterAll(async () => {
    for (const p of procs) await p.stop();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it('redeems each token at most once and records every SVID it hands out', { timeout: 120_000 }, async () => {
    const db = await createPgDatabase();
    drop = db.drop;
    const kek = join(dir, 'kek');
    writeFileSync(kek, Buffer.alloc(32, 9).toString('base64'), { mode: 0o600 });
    const adminToken = 'cairn-admin.' + 'r'.repeat(43);
    const start = async (name: string) => {
      const [http, tls] = [await freePort(), await freePort()];
      const p = spawnCairn(['ca', 'start', '--listen', `127.0.0.1:${http}`, '--tls-listen', `127.0.0.1:${tls}`], {
        CAIRN_DATA_DIR: join(dir, name), DATABASE_URL: db.url, CAIRN_KEK_FILE: kek, CAIRN_ADMIN_TOKEN: adminToken, CAIRN_SERVER: undefined, CAIRN_LOG_LEVEL: 'warn',
      });
      procs.push(p);
      await p.waitFor(/listening on/, 60_000);
      return { p, http: `http://127.0.0.1:${http}`, tls: `https://127.0.0.1:${tls}` };
    };
    const [a, b] = await Promise.all([start('a'), start('b')]);
    const admin = async (base: string, path: string, body?: unknown) => {
      const res = await fetch(base + path, { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      return { status: res.status, body: await res.json() };
    };
    expect((await admin(a.http, '/v1/trust-domains', { name: 'replicas.test' })).status).toBe(201);
    const { pin } = (await admin(b.http, '/v1/ca/tls')).body as { pin: string };
    const authority = await fetchPinnedAuthority(b.tls, pin); // one installation TLS authority for both replicas

    const tokens: string[] = [];
    for (let i = 0; i < 30; i++) tokens.push(((await admin(b.http, '/v1/tokens', { trustDomain: 'replicas.test' })).body as { token: string }).token);
    const csr = generateKeyAndCsr('ec-p256').csr.toString('base64');

    const received: X509SvidMessage[] = [];
    const perToken = new Map<string, number>();
    const redeem = async (base: string, token: string): Promise<void> => {
      try {
        // Each presentation from its own key, as two nodes racing for one token would be (the key that
        // spent a token may fetch the same SVID again; a different key must never get one).
        const own = generateKeyAndCsr('ec-p256').csr.toString('base64');
        const res = await requestJson<X509SvidMessage>('POST', `${base}/agent/v1/attest`, { token, csr: own }, { ca: authority, timeoutMs: 20_000 });
        if (res.status === 201) {
          received.push(res.body);
          perToken.set(token, (perToken.get(token) ?? 0) + 1);
        }
      } catch {
        // the killed replica: connection refused or reset
      }
    };
    const sign = async (base: string, i: number): Promise<void> => {
      try {
        const res = await fetch(`${base}/v1/x509-svids`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ spiffeId: `spiffe://replicas.test/burst/${i}`, csr }) });
        if (res.status === 201) received.push((await res.json()) as X509SvidMessage);
      } catch {
        // the killed replica
      }
    };
    const burst = Promise.all([
      ...tokens.flatMap((t) => [redeem(a.tls, t), redeem(b.tls, t)]),
      ...Array.from({ length: 60 }, (_, i) => sign(i % 2 ? a.http : b.http, i)),
    ]);
    await new Promise((r) => setTimeout(r, 40));
    a.p.child.kill('SIGKILL');
    await burst;

    expect([...perToken.values()].every((n) => n === 1)).toBe(true);
    expect(received.length).toBeGreaterThan(0);
    // every SVID a client holds is in the inventory (asked of the surviving replica)
    for (const svid of received) {
      const page = (await admin(b.http, `/v1/x509-svids?serial=${svid.serial}`)).body as { svids: { serial: string }[] };
      expect(page.svids.map((s) => s.serial), svid.spiffeId).toEqual([svid.serial]);
    }
    // the survivor still redeems what the burst left unspent
    const left = tokens.filter((t) => !perToken.has(t));
    for (const t of left) await redeem(b.tls, t);
    expect(tokens.every((t) => perToken.get(t) === 1)).toBe(true);
  });
});

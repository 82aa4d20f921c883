import { execFileSync } from 'node:child_process';
import { createHash, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeAttestationPaths as P, type X509PopChallenge } from '../../contract/node-attestation.js';
import { toNumber } from '../../ca/db/database.js';
import { NodeAttestationStore } from '../../ca/node-attestation/store.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority } from '../../lib/tls-client.js';
import { pemToDerList } from '../../spiffe/bundle/bundle.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { FakeClock } from '../support/clock.js';
import { storeKind, testDatabase } from '../support/db.js';

const TD = 'flood.test';
const openssl = (args: string[], cwd: string): void => {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
};

interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: { code?: string; message?: string; challengeId?: string; nonce?: string };
}

describe(`x509pop challenges cannot flood the store (${storeKind()} store)`, () => {
  let ca: TestCa;
  let dir: string;
  let authority: string;
  let device: { der: Buffer; key: string };
  let padding: Buffer;
  const clock = new FakeClock(new Date());
  const agents: HttpsAgent[] = [];

  /** POST from a given loopback address; the answer with its Retry-After header. */
  const challengeFrom = (address: string, chain: Buffer[]): Promise<Answer> => {
    const agent = new HttpsAgent({ localAddress: address, keepAlive: true });
    agents.push(agent);
    const payload = Buffer.from(JSON.stringify({ trustDomain: TD, chain: chain.map((c) => c.toString('base64')) }));
    return new Promise((resolve, reject) => {
      const req = request(ca.tlsUrl + P.x509PopChallenge, { method: 'POST', agent, ca: authority, checkServerIdentity: () => undefined, headers: { 'content-type': 'application/json', 'content-length': payload.length } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, body: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end(payload);
    });
  };
  const rows = async (): Promise<number> => toNumber((await ca.handle.db.query<{ n: unknown }>('SELECT count(*) AS n FROM x509pop_challenges')).rows[0]!.n);
  const databaseSize = async (): Promise<number> => toNumber((await ca.handle.db.query<{ n: unknown }>('SELECT pg_database_size(current_database()) AS n')).rows[0]!.n);

  beforeAll(async () => {
    ca = await startTestCa({ clock });
    dir = mkdtempSync(join(tmpdir(), 'cairn-flood-'));
    await ca.admin('/v1/trust-domains', { body: { name: TD } });
    const { pin } = await (await ca.admin(P.caTls)).json();
    authority = await fetchPinnedAuthority(ca.tlsUrl, pin);
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mfr.key', '-out', 'mfr.pem', '-days', '30', '-subj', '/CN=Acme Manufacturing CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], dir);
    writeFileSync(join(dir, 'device.ext'), 'basicConstraints=CA:FALSE\n');
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'device.key', '-out', 'device.csr', '-subj', '/CN=sensor-flood'], dir);
    openssl(['x509', '-req', '-in', 'device.csr', '-CA', 'mfr.pem', '-CAkey', 'mfr.key', '-days', '30', '-out', 'device.pem', '-extfile', 'device.ext'], dir);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'd2.key', '-out', 'd2.csr', '-subj', '/CN=sensor-2'], dir);
    openssl(['x509', '-req', '-in', 'd2.csr', '-CA', 'mfr.pem', '-CAkey', 'mfr.key', '-days', '30', '-out', 'd2.pem', '-extfile', 'device.ext'], dir);
    device = { der: pemToDerList(readFileSync(join(dir, 'device.pem'), 'utf8'))[0]!, key: readFileSync(join(dir, 'device.key'), 'utf8') };
    // What made each request cost ~200 KB before: the chain may carry 4 more certificates, any certificates.
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'pad.key', '-out', 'pad.pem', '-days', '2', '-subj', '/CN=padding', '-addext', `nsComment=${'A'.repeat(40_000)}`], dir);
    padding = pemToDerList(readFileSync(join(dir, 'pad.pem'), 'utf8'))[0]!;
    clock.set(new Date(Date.now() + 1000)); // the CA's time, now that the certificates exist (it moves only when the test says)
    expect((await ca.admin(`/v1/trust-domains/${TD}/attestors/x509pop/acme`, { method: 'PUT', body: { caCertificates: readFileSync(join(dir, 'mfr.pem'), 'utf8') } })).status).toBe(200);
  });
  afterAll(async () => {
    for (const a of agents) a.destroy();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a flood for one (public) device certificate leaves a bounded number of rows and store growth; over the cap it is 429 with Retry-After', async () => {
    const chain = [device.der, padding, padding, padding, padding];
    expect(chain.reduce((n, c) => n + c.length, 0)).toBeGreaterThan(160_000);
    const before = await databaseSize();
    const answers: Answer[] = [];
    for (let i = 0; i < 120; i++) answers.push(await challengeFrom(`127.0.92.${1 + (i % 4)}`, chain));
    const created = answers.filter((a) => a.status === 201);
    const refused = answers.filter((a) => a.status !== 201);
    expect(created).toHaveLength(5);
    expect(refused.every((a) => a.status === 429 && a.body.code === 'rate_limited')).toBe(true);
    expect(refused[0]!.body.message).toMatch(/outstanding challenges for this device certificate/);
    expect(Number(refused[0]!.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(refused[0]!.retryAfter)).toBeLessThanOrEqual(60);
    expect(await rows()).toBe(5);
    // 120 requests of ~165 KB each: what is stored is a few hundred bytes per challenge
    const size = toNumber((await ca.handle.db.query<{ n: unknown }>(`SELECT pg_total_relation_size('x509pop_challenges') AS n`)).rows[0]!.n);
    expect(size).toBeLessThan(256 * 1024);
    expect((await databaseSize()) - before).toBeLessThan(2 * 1024 * 1024);

    // an outstanding challenge still works for the device that holds the key
    const c = created[0]!.body as X509PopChallenge;
    const res = await new Promise<number>((resolve, reject) => {
      const payload = Buffer.from(JSON.stringify({ challengeId: c.challengeId, signature: sign('sha256', Buffer.from(c.nonce, 'base64'), device.key).toString('base64'), csr: generateKeyAndCsr('ec-p256').csr.toString('base64') }));
      const req = request(ca.tlsUrl + P.attestX509Pop, { method: 'POST', ca: authority, checkServerIdentity: () => undefined, headers: { 'content-type': 'application/json', 'content-length': payload.length } }, (r) => {
        r.resume();
        r.on('end', () => resolve(r.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(payload);
    });
    expect(res).toBe(201);
    expect(await rows()).toBe(4);
  }, 120_000);

  it('limits challenges per source address, successes included', async () => {
    // another certificate, from one address: every request counts, answered or refused
    const d2 = pemToDerList(readFileSync(join(dir, 'd2.pem'), 'utf8'))[0]!;
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push((await challengeFrom('127.0.93.1', [d2])).status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(5);
    const over = await challengeFrom('127.0.93.1', [d2]);
    expect(over.status).toBe(429);
    expect(over.body.message).toMatch(/too many x509pop challenges from this address/);
    expect(Number(over.retryAfter)).toBeGreaterThanOrEqual(1);
  });

  it('reclaims expired challenges (and, on the embedded store, their space); the cap frees up', async () => {
    const heapBefore = toNumber((await ca.handle.db.query<{ n: unknown }>(`SELECT pg_relation_size('x509pop_challenges') AS n`)).rows[0]!.n);
    expect(await rows()).toBeGreaterThan(0);
    clock.advance(61);
    const reclaimed = await ca.core.nodeAttestation.reclaim();
    expect(reclaimed.challenges).toBeGreaterThanOrEqual(9);
    expect(await rows()).toBe(0);
    const heapAfter = toNumber((await ca.handle.db.query<{ n: unknown }>(`SELECT pg_relation_size('x509pop_challenges') AS n`)).rows[0]!.n);
    // PGlite runs no autovacuum: reclaim() vacuumed, and the emptied table gave its pages back
    if (storeKind() === 'embedded') expect(heapAfter).toBeLessThan(Math.max(heapBefore, 1));
    expect((await challengeFrom('127.0.94.1', [device.der])).status).toBe(201);
  });

  it('caps outstanding challenges across all certificates too (store level, small caps)', async () => {
    const t = await testDatabase();
    try {
      const store = new NodeAttestationStore(t.db);
      const now = new Date();
      await t.db.query(`INSERT INTO trust_domains (name, ca_key_type, ca_ttl_seconds, x509_svid_ttl_seconds, jwt_svid_ttl_seconds, created_at, updated_at) VALUES ('caps.test', 'ec-p256', 3600, 600, 300, $1, $1)`, [now]);
      const challenge = (i: number) => ({
        id: `c${i}`, trustDomain: 'caps.test', attestor: 'acme', fingerprint: createHash('sha1').update(String(i)).digest('hex'), publicKey: Buffer.alloc(91), anchor: 'a'.repeat(40),
        validUntil: new Date(now.getTime() + 86400_000), selectors: [], nonce: Buffer.alloc(32), expiresAt: new Date(now.getTime() + 60_000 + i),
      });
      const caps = { perCertificate: 2, total: 3 };
      for (let i = 0; i < 3; i++) expect(await store.createChallenge(challenge(i), now, caps)).toEqual({ created: true });
      const full = await store.createChallenge(challenge(3), now, caps);
      expect(full).toMatchObject({ created: false, scope: 'total' });
      expect((full as { retryAt: Date }).retryAt.getTime()).toBe(now.getTime() + 60_000);
      // expired ones do not count, and reclaim() deletes them
      const later = new Date(now.getTime() + 61_000);
      expect(await store.createChallenge({ ...challenge(4), expiresAt: new Date(later.getTime() + 60_000) }, later, caps)).toEqual({ created: true });
      expect((await store.reclaim(later)).challenges).toBe(3);
    } finally {
      await t.close();
    }
  }, 120_000);
});

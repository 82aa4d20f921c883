import { createDecipheriv, generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSealer, kekId } from '../../ca/authority/sealing.js';
import { readKekFile } from '../../ca/keys-at-rest.js';
import { startCa } from '../../ca/main.js';
import { capturingLogger } from '../support/logs.js';
import { createCsr } from '../../lib/pkcs10.js';
import { systemRandom } from '../../lib/random.js';
import { opensslVerify } from '../support/openssl.js';
import { callAs, createAdmin } from '../support/admins.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { enterprisePki } from '../support/enterprise-ca.js';

const TD = 'kek.test';
const TOKEN = 'kek-test-api-token-7f3a';
const UPSTREAM_TD = 'kek-upstream.test';

/** Every sealed value in the database, raw, by where it is: what a database dump holds. */
async function sealedBlobs(ca: TestCa): Promise<{ where: string; blob: Buffer }[]> {
  const keys = await ca.handle.db.query<{ id: string; private_key_sealed: Uint8Array }>('SELECT id, private_key_sealed FROM authority_keys');
  const tls = await ca.handle.db.query<{ private_key_sealed: Uint8Array }>('SELECT private_key_sealed FROM server_tls_authority');
  const tokens = await ca.handle.db.query<{ name: string; sealed: string }>(`SELECT name, config->>'apiTokenSealed' AS sealed FROM node_attestors WHERE config ? 'apiTokenSealed'`);
  const audit = await ca.handle.db.query<{ private_key_sealed: Uint8Array }>('SELECT private_key_sealed FROM audit_log');
  const upstream = await ca.handle.db.query<{ trust_domain: string; private_key_sealed: Uint8Array }>('SELECT trust_domain, private_key_sealed FROM upstream_authorities');
  return [
    ...upstream.rows.map((r) => ({ where: `upstream key of ${r.trust_domain}`, blob: Buffer.from(r.private_key_sealed) })),
    ...keys.rows.map((r) => ({ where: `authority key ${r.id}`, blob: Buffer.from(r.private_key_sealed) })),
    ...tls.rows.map((r) => ({ where: 'server TLS authority', blob: Buffer.from(r.private_key_sealed) })),
    ...tokens.rows.map((r) => ({ where: `k8s token ${r.name}`, blob: Buffer.from(r.sealed, 'base64') })),
    ...audit.rows.map((r) => ({ where: 'audit log key', blob: Buffer.from(r.private_key_sealed) })),
  ];
}

/** Whether AES-256-GCM under `kek` authenticates the blob (format 1: version byte, nonce, body, tag) with any AAD the CA uses. */
function opensWith(kek: Buffer, blob: Buffer, aads: readonly string[]): boolean {
  for (const aad of aads) {
    try {
      const d = createDecipheriv('aes-256-gcm', kek, blob.subarray(1, 13));
      d.setAAD(Buffer.from(aad, 'utf8'));
      d.setAuthTag(blob.subarray(blob.length - 16));
      d.update(blob.subarray(13, blob.length - 16));
      d.final();
      return true;
    } catch {
      // not this AAD
    }
  }
  return false;
}

const csr = (): string => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return createCsr(pair.privateKey, pair.publicKey).toString('base64');
};

describe(`cairn kek rotate: every sealed value re-sealed under the new KEK (${storeKind()} store)`, { timeout: 180_000 }, () => {
  let ca: TestCa;
  let kekFile: string;
  let oldKek: Buffer;
  const newKek = randomBytes(32);
  let aads: string[];

  const stage = (key: Buffer, mode = 0o600): void => {
    writeFileSync(`${kekFile}.next`, key.toString('base64') + '\n', { mode });
    chmodSync(`${kekFile}.next`, mode);
  };

  beforeAll(async () => {
    ca = await startTestCa();
    kekFile = join(ca.dataDir, 'kek');
    oldKek = readKekFile(kekFile);
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD, jwtIssuer: `${ca.url}/td/${TD}` } })).status).toBe(201);
    const psat = await ca.admin(`/v1/trust-domains/${TD}/attestors/k8s-psat/east`, {
      method: 'PUT',
      body: { mode: 'token_review', apiServer: 'https://127.0.0.1:9', apiToken: TOKEN, allowedServiceAccounts: ['cairn:cairn-agent'] },
    });
    expect(psat.status).toBe(200);
    // a disk upstream authority's key is sealed too
    const pki = enterprisePki(mkdtempSync(join(tmpdir(), 'cairn-kek-pki-')));
    const upstream = await ca.admin('/v1/trust-domains', { body: { name: UPSTREAM_TD, upstreamCaCertificate: readFileSync(pki.issuingChain, 'utf8'), upstreamCaKey: readFileSync(pki.issuingKey, 'utf8') } });
    expect(upstream.status).toBe(201);
    rmSync(pki.dir, { recursive: true, force: true });
    const ids = (await ca.handle.db.query<{ trust_domain: string; id: string }>('SELECT trust_domain, id FROM authority_keys')).rows;
    aads = [...ids.map((r) => `cairn-authority-key:${r.trust_domain}:${r.id}`), 'cairn-server-tls-authority', `k8s-psat/${TD}/east/api-token`, 'audit-log-key', `cairn-upstream-key:${UPSTREAM_TD}`];
  }, 120_000);
  afterAll(() => ca.close());

  it('refuses to rotate with no new KEK staged, with the KEK in use, or with one others may read', async () => {
    let res = await callAs(ca, ca.adminToken, 'POST', '/v1/kek/rotate', {});
    expect([res.status, res.body.code]).toEqual([409, 'kek_not_staged']);
    expect(res.body.message).toContain(`${kekFile}.next`);
    stage(oldKek);
    res = await callAs(ca, ca.adminToken, 'POST', '/v1/kek/rotate', {});
    expect([res.status, res.body.code]).toEqual([409, 'kek_unchanged']);
    stage(newKek, 0o644);
    res = await callAs(ca, ca.adminToken, 'POST', '/v1/kek/rotate', {});
    expect([res.status, res.body.code]).toEqual([409, 'kek_not_staged']);
    expect(res.body.message).toContain('chmod 600');
    rmSync(`${kekFile}.next`);
    // nothing moved: the KEK file and every sealed value are as they were
    expect(readKekFile(kekFile).equals(oldKek)).toBe(true);
    for (const { where, blob } of await sealedBlobs(ca)) expect(opensWith(oldKek, blob, aads), where).toBe(true);
  });

  it('only an admin of the whole installation may rotate; a viewer may see the status', async () => {
    stage(newKek);
    const operator = await createAdmin(ca, { name: 'ops', role: 'operator' });
    const scoped = await createAdmin(ca, { name: 'td-admin', role: 'admin', trustDomains: [TD] });
    const viewer = await createAdmin(ca, { name: 'watcher', role: 'viewer' });
    for (const token of [operator, scoped, viewer]) expect((await callAs(ca, token, 'POST', '/v1/kek/rotate', {})).status).toBe(403);
    expect((await callAs(ca, undefined, 'POST', '/v1/kek/rotate', {})).status).toBe(401);
    const status = await callAs(ca, viewer, 'GET', '/v1/kek');
    expect(status.status).toBe(200);
    expect(status.body).toEqual({ kekId: kekId(oldKek), heldKekIds: [kekId(oldKek)], sealedValues: aads.length, sealedUnder: { [kekId(oldKek)]: aads.length } });
    rmSync(`${kekFile}.next`);
  });

  it('re-seals every value in one transaction; the old KEK opens nothing, the new one alone opens all', async () => {
    const before = await sealedBlobs(ca);
    expect(before.length).toBe(aads.length);
    stage(newKek);
    const res = await callAs(ca, ca.adminToken, 'POST', '/v1/kek/rotate', {});
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ kekId: kekId(newKek), previousKekId: kekId(oldKek), sealedValues: aads.length, resealed: aads.length, kekFile });
    // the new KEK replaced the old in the CA's KEK file, and the staged copy is gone
    expect(readKekFile(kekFile).equals(newKek)).toBe(true);
    expect(existsSync(`${kekFile}.next`)).toBe(false);
    const after = await sealedBlobs(ca);
    expect(after.length).toBe(before.length);
    const alone = createSealer(newKek, systemRandom);
    for (const { where, blob } of after) {
      expect(opensWith(oldKek, blob, aads), `${where} still opens with the old KEK`).toBe(false);
      expect(opensWith(newKek, blob, aads), where).toBe(true);
      // still format 1, which the release before this one reads during a rolling upgrade
      expect(blob[0], where).toBe(1);
    }
    // the secrets themselves are unchanged: the token still opens to what the admin gave
    const token = after.find((b) => b.where === 'k8s token east')!;
    expect(alone.open(token.blob, `k8s-psat/${TD}/east/api-token`).toString()).toBe(TOKEN);
    const status = await callAs(ca, ca.adminToken, 'GET', '/v1/kek');
    expect(status.body).toMatchObject({ kekId: kekId(newKek), sealedUnder: { [kekId(newKek)]: aads.length } });
    // the change is recorded, never with key material
    expect(ca.logs()).toMatch(/"action":"kek.rotate"/);
    expect(ca.logs()).not.toContain(newKek.toString('base64'));
    // and in the audit log, written in the re-seal transaction
    const entries = (await ca.handle.db.query<{ data: Uint8Array }>(`SELECT data FROM audit_entries WHERE event = 'kek.rotated'`)).rows.map((r) => JSON.parse(Buffer.from(r.data).toString('utf8')));
    expect(entries).toEqual([expect.objectContaining({ kekId: kekId(newKek), previousKekId: kekId(oldKek), resealed: aads.length })]);
  });

  it('a value sealed under the old KEK just as the rotation committed is re-sealed by housekeeping', async () => {
    // what a request that raced the rotation's snapshot leaves behind
    const straggler = createSealer(oldKek, systemRandom).seal(Buffer.from(TOKEN), `k8s-psat/${TD}/east/api-token`).toString('base64');
    await ca.handle.db.query(`UPDATE node_attestors SET config = jsonb_set(config, '{apiTokenSealed}', to_jsonb($1::text)) WHERE name = 'east'`, [straggler]);
    expect((await callAs(ca, ca.adminToken, 'GET', '/v1/kek')).body.sealedUnder[kekId(oldKek)]).toBe(1);
    await ca.core.kek.settle();
    for (const { where, blob } of await sealedBlobs(ca)) expect(opensWith(newKek, blob, aads), where).toBe(true);
    expect((await callAs(ca, ca.adminToken, 'GET', '/v1/kek')).body.sealedUnder).toEqual({ [kekId(newKek)]: aads.length });
  });

  it('a restarted CA opens every key with the new KEK file and signs', async () => {
    await ca.restart();
    const svid = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/w`, csr: csr() } });
    expect(svid.status).toBe(201);
    const body = await svid.json();
    expect(opensslVerify(body.certChain, body.bundle)).toContain('OK');
    expect((await ca.admin('/v1/jwt-svids', { body: { spiffeId: `spiffe://${TD}/w`, audience: ['a'] } })).status).toBe(201);
    // the audit log key, re-sealed too, still signs
    expect((await ca.admin('/v1/audit/checkpoint', { method: 'POST' })).status).toBe(200);
    // and so does the upstream key: it signs the next CA certificate of its trust domain
    const prepared = await ca.admin(`/v1/trust-domains/${UPSTREAM_TD}/authorities/prepare`, { method: 'POST', body: { kind: 'x509' } });
    expect(prepared.status, await prepared.clone().text()).toBe(201);
    expect((await prepared.json()).upstreamSigned).toBe(true);
    // and a CA given the old KEK cannot start on this database
    const stale = join(mkdtempSync(join(tmpdir(), 'cairn-old-kek-')), 'kek');
    writeFileSync(stale, oldKek.toString('base64'), { mode: 0o600 });
    await ca.stop();
    const { logger } = capturingLogger();
    await expect(startCa({ dataDir: ca.dataDir, databaseUrl: ca.databaseUrl, host: '127.0.0.1', port: 0, tlsPort: 0, kekFile: stale }, { logger })).rejects.toThrow(/does not open the keys stored in this database/);
    await ca.restart();
  });
});

describe.runIf(storeKind() === 'postgres')('replicas take the new KEK on SIGHUP (postgres store)', { timeout: 180_000 }, () => {
  let a: TestCa;
  let b: TestCa;
  let dir: string;

  beforeAll(async () => {
    a = await startTestCa();
    dir = mkdtempSync(join(tmpdir(), 'cairn-kek-replica-'));
    copyFileSync(join(a.dataDir, 'kek'), join(dir, 'kek'));
    chmodSync(join(dir, 'kek'), 0o600);
    b = await startTestCa({ databaseUrl: a.databaseUrl, kekFile: join(dir, 'kek') });
    expect((await a.admin('/v1/trust-domains', { body: { name: TD, jwtIssuer: `${a.url}/td/${TD}` } })).status).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await b?.close();
    await a?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a replica without the new KEK says so; after SIGHUP it opens the keys and re-seals what it sealed meanwhile', async () => {
    const oldKek = readKekFile(join(dir, 'kek'));
    const newKek = randomBytes(32);
    writeFileSync(join(a.dataDir, 'kek.next'), newKek, { mode: 0o600 });
    expect((await callAs(a, a.adminToken, 'POST', '/v1/kek/rotate', {})).status).toBe(200);

    // B still holds only the old KEK: a key sealed under the new one is refused with what to do
    await expect(b.core.serverTls.serverCredentials(['localhost'])).rejects.toThrow(/does not open with the key-encryption key this process holds \([0-9a-f]{16}\): if the KEK was rotated/);
    // …and what B seals meanwhile is under the old KEK
    expect((await callAs(b, a.adminToken, 'POST', '/v1/trust-domains', { name: 'late.kek.test', jwtIssuer: `${b.url}/td/late.kek.test` })).status).toBe(201);
    const mixed = (await callAs(a, a.adminToken, 'GET', '/v1/kek')).body;
    expect(mixed.sealedUnder[kekId(oldKek)]).toBe(2);

    writeFileSync(join(dir, 'kek'), newKek.toString('hex'), { mode: 0o600 });
    await b.handle.reloadKek();
    const status = (await callAs(b, a.adminToken, 'GET', '/v1/kek')).body;
    expect(status.kekId).toBe(kekId(newKek));
    expect(status.heldKekIds.sort()).toEqual([kekId(oldKek), kekId(newKek)].sort());
    expect(status.sealedUnder).toEqual({ [kekId(newKek)]: status.sealedValues });
    await b.core.serverTls.serverCredentials(['localhost']);

    // A, which only ever had the new KEK on disk, opens everything after a restart
    await a.restart();
    expect((await a.admin('/v1/x509-svids', { body: { spiffeId: 'spiffe://late.kek.test/w', csr: csr() } })).status).toBe(201);
  });
});

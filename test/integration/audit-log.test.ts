import { generateKeyPairSync } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson, type JsonValue } from '../../lib/canonical-json.js';
import { leafHash, rootOf, verifyConsistency, verifyInclusion } from '../../lib/merkle.js';
import { openNote, parseCheckpoint, verifierKey } from '../../lib/signed-note.js';
import { createCsr } from '../../lib/pkcs10.js';
import { packageRoot } from '../../lib/paths.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { runCairnAsync } from '../support/processes.js';

const TD = 'audit.test';

const csr = (): string => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return createCsr(pair.privateKey, pair.publicKey).toString('base64');
};

describe(`the audit log (${storeKind()} store)`, { timeout: 300_000 }, () => {
  let ca: TestCa;
  let dir: string;
  let witness: Server;
  const witnessed: { type: string | undefined; body: string }[] = [];
  const cli = (...args: string[]) => runCairnAsync(['audit', ...args, '--server', ca.url], { CAIRN_ADMIN_TOKEN: ca.adminToken, CAIRN_SERVER: undefined, CAIRN_CA_PIN: undefined, CAIRN_CA_FILE: undefined });
  const json = async (path: string, init?: Parameters<TestCa['admin']>[1]) => {
    const res = await ca.admin(path, init);
    return { status: res.status, body: (await res.json()) as any };
  };
  const sign = async (): Promise<string> => {
    const res = await ca.admin('/v1/audit/checkpoint', { method: 'POST' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    return res.text();
  };
  const allEntries = async (size: number): Promise<Buffer[]> => {
    const out: Buffer[] = [];
    for (let start = 0; start < size; start += 1000) {
      const page = await json(`/v1/audit/entries?start=${start}&end=${Math.min(size, start + 1000)}`);
      expect(page.status).toBe(200);
      out.push(...page.body.entries.map((e: { data: string }) => Buffer.from(e.data, 'base64')));
    }
    return out;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-audit-'));
    // a witness the CA posts each checkpoint to (configured, never set through the API)
    witness = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        witnessed.push({ type: req.headers['content-type'], body });
        res.end();
      });
    });
    await new Promise<void>((r) => witness.listen(0, '127.0.0.1', r));
    const port = (witness.address() as { port: number }).port;
    ca = await startTestCa({ config: { auditOrigin: 'audit.test.example/cairn/audit', auditCheckpointFile: join(dir, 'exported.checkpoint'), auditCheckpointWebhook: `http://127.0.0.1:${port}/checkpoints` } });
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
  });
  afterAll(async () => {
    await ca?.close();
    await new Promise((r) => witness?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('records issuance, JWT-SVIDs, tokens and admin changes as canonical JSON, never a secret', async () => {
    const x = await json('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/web`, csr: csr() } });
    expect(x.status).toBe(201);
    const revoked = await json('/v1/x509-svids/revoke', { body: { serial: x.body.serial, trustDomain: TD, reason: 'key compromise' } });
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    const j = await json('/v1/jwt-svids', { body: { spiffeId: `spiffe://${TD}/web`, audience: ['gw'] } });
    expect(j.status).toBe(201);
    const t = await json('/v1/tokens', { body: { trustDomain: TD } });
    expect(t.status).toBe(201);
    expect((await fetch(`${ca.url}/v1/entries`, { headers: { authorization: 'Bearer wrong-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' } })).status).toBe(401);
    // the admin record of the failed call is appended once the answer went out
    let entries: Record<string, any>[] = [];
    let raw: Buffer[] = [];
    const deadline = Date.now() + 30_000;
    while (!entries.some((e) => e.event === 'admin.auth_failed')) {
      if (Date.now() > deadline) throw new Error('no admin.auth_failed entry');
      const size = parseCheckpoint(openNote(await sign(), (await json('/v1/audit/key')).body.vkey)).size;
      raw = await allEntries(size);
      entries = raw.map((d) => JSON.parse(d.toString('utf8')));
    }
    raw.forEach((d, i) => expect(canonicalJson(entries[i] as JsonValue), `entry ${i} is canonical`).toBe(d.toString('utf8')));
    for (const e of entries) expect(Object.keys(e)).toEqual(expect.arrayContaining(['time', 'event', 'actor']));
    const issued = entries.find((e) => e.event === 'x509_svid.issued' && e.spiffeId === `spiffe://${TD}/web`);
    expect(issued).toMatchObject({ serial: x.body.serial, trustDomain: TD, notAfter: x.body.expiresAt ?? expect.any(String), issuedTo: expect.any(String) });
    expect(issued!.serial).toMatch(/^[0-9a-f]+$/);
    expect(entries.find((e) => e.event === 'svid.revoked')).toMatchObject({ serial: x.body.serial, spiffeId: `spiffe://${TD}/web`, trustDomain: TD, reason: 'key compromise' });
    expect(entries.find((e) => e.event === 'jwt_svid.minted')).toMatchObject({ spiffeId: `spiffe://${TD}/web`, audience: ['gw'], expiresAt: expect.any(String) });
    expect(entries.find((e) => e.event === 'token.minted')).toMatchObject({ tokenId: t.body.id, trustDomain: TD, actor: expect.any(String) });
    expect(entries.find((e) => e.event === 'admin.action' && e.action === 'trust_domain.create')).toMatchObject({ outcome: 'success', new: expect.objectContaining({ name: TD }) });
    expect(entries.find((e) => e.event === 'admin.auth_failed')).toMatchObject({ outcome: 'failure', status: 401, actor: 'anonymous' });
    const all = Buffer.concat(raw).toString('utf8');
    for (const secret of [t.body.token, j.body.token, ca.adminToken]) expect(all.includes(secret)).toBe(false);
  });

  it('failed admin authentications are entries only up to 20 per source and minute, as anonymous', async () => {
    for (let i = 0; i < 40; i++) {
      expect((await fetch(`${ca.url}/v1/entries`, { headers: { authorization: `Bearer cairn-admin.flood${i}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` } })).status).toBe(401);
    }
    // let the records of the last answers land, then count what the log holds
    await new Promise((r) => setTimeout(r, 1500));
    const size = parseCheckpoint(openNote(await sign(), (await json('/v1/audit/key')).body.vkey)).size;
    const failed = (await allEntries(size)).map((d) => JSON.parse(d.toString('utf8'))).filter((e) => e.event === 'admin.auth_failed');
    expect(failed.length).toBeLessThanOrEqual(20);
    expect(failed.length).toBeGreaterThan(0);
    for (const e of failed) expect(e.actor).toBe('anonymous');
  });

  it('answers bad parameters 400 with a code', async () => {
    for (const [path, code] of [
      ['/v1/audit/entries?start=5&end=2', 'invalid_audit_range'],
      ['/v1/audit/entries?start=0&end=1001', 'invalid_audit_range'],
      ['/v1/audit/entries?start=99999&end=100000', 'invalid_audit_range'],
      ['/v1/audit/entries?start=abc&end=2', 'invalid_request'],
      ['/v1/audit/entries?start=0', 'invalid_request'],
      ['/v1/audit/proof/inclusion?index=5&size=5', 'invalid_audit_range'],
      ['/v1/audit/proof/inclusion?index=0&size=999999', 'invalid_audit_range'],
      ['/v1/audit/proof/consistency?from=3&to=2', 'invalid_audit_range'],
      ['/v1/audit/proof/consistency?from=-1&to=2', 'invalid_request'],
    ] as const) {
      const r = await json(path);
      expect(r.status, path).toBe(400);
      expect(r.body.code, path).toBe(code);
    }
  });

  it('serves proofs that verify, and a checkpoint an independent verifier (Python cryptography) accepts', async () => {
    const note = await sign();
    const { vkey, publicKey } = (await json('/v1/audit/key')).body;
    expect(vkey.startsWith('audit.test.example/cairn/audit+')).toBe(true);
    expect(Buffer.from(publicKey, 'base64')).toHaveLength(32);
    const cp = parseCheckpoint(openNote(note, vkey));
    const data = await allEntries(cp.size);
    expect(rootOf(data.map(leafHash)).equals(cp.root)).toBe(true);
    for (let i = 0; i < cp.size; i++) {
      const proof = (await json(`/v1/audit/proof/inclusion?index=${i}&size=${cp.size}`)).body.hashes.map((h: string) => Buffer.from(h, 'base64'));
      expect(verifyInclusion(leafHash(data[i]!), i, cp.size, proof, cp.root), `inclusion of ${i}`).toBe(true);
    }
    const index = Math.floor(cp.size / 2);
    const proof = (await json(`/v1/audit/proof/inclusion?index=${index}&size=${cp.size}`)).body.hashes;
    const py = spawnSync('/usr/bin/python3', [join(packageRoot(), 'test', 'support', 'audit_verify.py')], {
      input: JSON.stringify({ vkey, note, entries: data.map((d) => d.toString('base64')), index, proof }),
      encoding: 'utf8',
    });
    expect(py.stderr).toBe('');
    expect(JSON.parse(py.stdout)).toEqual({ ok: true, size: cp.size, origin: 'audit.test.example/cairn/audit', index });
    // and it is not a verifier that accepts anything: one flipped byte of an entry fails it
    const bad = data.map((d) => d.toString('base64'));
    bad[index] = Buffer.from(data[index]!.toString('utf8').replace('"time"', '"tIme"')).toString('base64');
    const refused = spawnSync('/usr/bin/python3', [join(packageRoot(), 'test', 'support', 'audit_verify.py')], { input: JSON.stringify({ vkey, note, entries: bad, index, proof }), encoding: 'utf8' });
    expect(refused.status).toBe(1);
    expect(JSON.parse(refused.stdout).error).toMatch(/root differs/);
  });

  it('proves consistency between two checkpoints, and cairn audit verify checks it', async () => {
    const { vkey } = (await json('/v1/audit/key')).body;
    const first = await sign();
    const old = parseCheckpoint(openNote(first, vkey));
    // the checkpoint was exported as it was made
    expect(readFileSync(join(dir, 'exported.checkpoint'), 'utf8')).toBe(first);
    expect(witnessed.at(-1)).toEqual({ type: 'text/plain; charset=utf-8', body: first });
    writeFileSync(join(dir, 'old.checkpoint'), first);
    for (let i = 0; i < 5; i++) expect((await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/batch/${i}`, csr: csr() } })).status).toBe(201);
    const later = parseCheckpoint(openNote(await sign(), vkey));
    expect(later.size).toBeGreaterThan(old.size);
    const proof = (await json(`/v1/audit/proof/consistency?from=${old.size}&to=${later.size}`)).body.hashes.map((h: string) => Buffer.from(h, 'base64'));
    expect(verifyConsistency(old.size, later.size, old.root, later.root, proof)).toBe(true);
    expect(verifyConsistency(old.size, later.size, Buffer.alloc(32), later.root, proof)).toBe(false);
    const ok = await cli('verify', '--checkpoint-file', join(dir, 'old.checkpoint'), '--json');
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ origin: 'audit.test.example/cairn/audit', consistentWith: { size: old.size } });
    // a pinned verifier key: the one kept elsewhere verifies; another key with the log's name (a CA
    // whose database and key were replaced) does not, whatever key the CA serves
    expect((await cli('verify', '--vkey', vkey)).status).toBe(0);
    const other = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    const impostor = await cli('verify', '--vkey', verifierKey('audit.test.example/cairn/audit', other));
    expect(impostor.status).toBe(1);
    expect(impostor.stderr).toMatch(/^error: audit_verify_failed: the checkpoint's signature does not verify/);
    const malformed = await cli('verify', '--vkey', 'not-a-key');
    expect(malformed.status).toBe(2);
    expect(malformed.stderr).toMatch(/^error: --vkey must be a C2SP verifier key/);
    const found = await cli('search', '--spiffe-id', `spiffe://${TD}/batch/3`, '--event', 'x509_svid.issued', '--json');
    expect(found.status).toBe(0);
    expect(JSON.parse(found.stdout)).toEqual([expect.objectContaining({ entry: expect.objectContaining({ spiffeId: `spiffe://${TD}/batch/3` }) })]);
    const tail = await cli('tail', '--lines', '3');
    expect(tail.status).toBe(0);
    expect(tail.stdout.trim().split('\n')).toHaveLength(3);
  });

  describe('a row changed directly in the database makes verify fail and name it', () => {
    const row = async (idx: number) => (await ca.handle.db.query<{ seq: unknown; data: Uint8Array }>('SELECT seq, data FROM audit_entries WHERE idx = $1', [idx])).rows[0]!;
    const verifyFails = async (index: number): Promise<void> => {
      const r = await cli('verify');
      expect(r.status, r.stdout + r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^error: audit_verify_failed: entry ${index} `));
    };
    beforeAll(async () => {
      await sign();
      expect((await cli('verify')).status).toBe(0);
    });

    it('an edited entry', async () => {
      const target = 3;
      const before = await row(target);
      const edited = Buffer.from(Buffer.from(before.data).toString('utf8').replace(/"time":"[^"]+"/, '"time":"1999-01-01T00:00:00.000Z"'));
      await ca.handle.db.query('UPDATE audit_entries SET data = $2 WHERE idx = $1', [target, edited]);
      await verifyFails(target);
      await ca.handle.db.query('UPDATE audit_entries SET data = $2 WHERE idx = $1', [target, Buffer.from(before.data)]);
      expect((await cli('verify')).status).toBe(0);
    });

    it('a deleted entry', async () => {
      const target = 4;
      const before = await row(target);
      const full = (await ca.handle.db.query<Record<string, unknown>>('SELECT * FROM audit_entries WHERE idx = $1', [target])).rows[0]!;
      await ca.handle.db.query('DELETE FROM audit_entries WHERE idx = $1', [target]);
      await verifyFails(target);
      await ca.handle.db.query('INSERT INTO audit_entries (seq, idx, data, time, event, actor, spiffe_id, serial) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
        String(full.seq), target, Buffer.from(before.data), full.time, full.event, full.actor, full.spiffe_id, full.serial,
      ]);
      expect((await cli('verify')).status).toBe(0);
    });

    it('two entries swapped', async () => {
      const [a, b] = [await row(2), await row(5)];
      await ca.handle.db.query('UPDATE audit_entries SET data = $2 WHERE idx = $1', [2, Buffer.from(b.data)]);
      await ca.handle.db.query('UPDATE audit_entries SET data = $2 WHERE idx = $1', [5, Buffer.from(a.data)]);
      await verifyFails(2);
      await ca.handle.db.query('UPDATE audit_entries SET data = $2 WHERE idx = $1', [2, Buffer.from(a.data)]);
      await ca.handle.db.query('UPDATE audit_entries SET data = $2 WHERE idx = $1', [5, Buffer.from(b.data)]);
      expect((await cli('verify')).status).toBe(0);
    });
  });

  it('refuses the checkpoint and proofs to a credential scoped to one trust domain, and signing to a viewer', async () => {
    const scoped = (await json('/v1/admins', { body: { name: 'audit-scoped', role: 'admin', trustDomains: [TD] } })).body.token;
    const viewer = (await json('/v1/admins', { body: { name: 'audit-viewer', role: 'viewer' } })).body.token;
    const as = (token: string, method = 'GET', path = '/v1/audit/checkpoint') => fetch(ca.url + path, { method, headers: { authorization: `Bearer ${token}` } });
    expect((await as(scoped)).status).toBe(403);
    expect((await as(viewer)).status).toBe(200);
    expect((await as(viewer, 'GET', '/v1/audit/entries?start=0&end=1')).status).toBe(200);
    expect((await as(viewer, 'POST')).status).toBe(403);
  });
});

import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../ca/audit/service.js';
import { AuditStore } from '../../ca/audit/store.js';
import { createSealer, KekRing } from '../../ca/authority/sealing.js';
import { readKekFile } from '../../ca/keys-at-rest.js';
import { systemClock } from '../../lib/clock.js';
import { createLogger } from '../../lib/log.js';
import { createCsr } from '../../lib/pkcs10.js';
import { systemRandom } from '../../lib/random.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { runCairnAsync } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const TD = 'replicas.audit.test';
const PER_REPLICA = 40;

const csr = (): string => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return createCsr(pair.privateKey, pair.publicKey).toString('base64');
};

/**
 * Many writers and several integrators at once: on PostgreSQL two CA replicas on one database, each
 * issuing and integrating (their checkpoint loops run every second, and both are asked to sign at
 * once); on the embedded store one CA and a second integrator on its database. Either way the log
 * must come out numbered 0…n-1 with no gap or duplicate, hold every SVID issued, and verify.
 */
describe(`one gap-free audit log from concurrent replicas (${storeKind()} store)`, { timeout: 300_000 }, () => {
  const cas: TestCa[] = [];
  beforeAll(async () => {
    const a = await startTestCa({ config: { auditCheckpointIntervalMs: 1000 } });
    cas.push(a);
    if (storeKind() === 'postgres') cas.push(await startTestCa({ databaseUrl: a.databaseUrl, kekFile: join(a.dataDir, 'kek'), config: { auditCheckpointIntervalMs: 1000 } }));
    expect((await a.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
  });
  afterAll(async () => {
    for (const ca of [...cas].reverse()) await ca.close();
  });
  // the second replica found the bootstrap credential made already: every call uses the first one's
  const call = (ca: TestCa, path: string, init: { method?: string; body?: unknown } = {}) =>
    fetch(ca.url + path, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers: { authorization: `Bearer ${cas[0]!.adminToken}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });

  it('numbers every entry once, 0…n-1, whichever replica appended it', async () => {
    const [a] = cas as [TestCa];
    // a second integrator racing the CAs' own (on PostgreSQL, besides the second replica's)
    const extra = new AuditLog({
      store: new AuditStore(a.handle.db),
      clock: systemClock,
      sealer: createSealer(new KekRing(readKekFile(join(a.dataDir, 'kek'))), systemRandom),
      logger: createLogger({ level: 'silent' }),
      origin: 'ignored.example/cairn/audit',
    });
    let stop = false;
    const integrating = (async () => {
      while (!stop) {
        await extra.integrate();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const serials = new Set<string>();
    const issue = async (ca: TestCa, who: number): Promise<void> => {
      for (let i = 0; i < PER_REPLICA; i++) {
        const res = await call(ca, '/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/r${who}/w${i}`, csr: csr() } });
        expect(res.status).toBe(201);
        serials.add(((await res.json()) as { serial: string }).serial);
        if (i === PER_REPLICA / 2) await Promise.all(cas.map((c) => call(c, '/v1/audit/checkpoint', { method: 'POST' }).then((r) => expect(r.status).toBe(200))));
      }
    };
    // two writers per replica
    try {
      await Promise.all(cas.flatMap((ca, k) => [issue(ca, 2 * k), issue(ca, 2 * k + 1)]));
    } finally {
      stop = true;
      await integrating;
    }
    const db = a.handle.db;
    // admin records are appended once each answer has gone out: wait for the last mint's
    const mints = PER_REPLICA * 2 * cas.length;
    await waitFor('every mint\'s admin record', async () => {
      const n = Number((await db.query<{ n: unknown }>(`SELECT count(*) AS n FROM audit_entries WHERE event = 'admin.action' AND convert_from(data, 'UTF8') LIKE '%"action":"x509_svid.mint"%'`)).rows[0]!.n);
      return n === mints ? true : undefined;
    }, 60_000);
    await Promise.all(cas.map((c) => call(c, '/v1/audit/checkpoint', { method: 'POST' })));
    const stats = (await db.query<{ total: unknown; numbered: unknown; lo: unknown; hi: unknown; distinct_idx: unknown }>(
      'SELECT count(*) AS total, count(idx) AS numbered, min(idx) AS lo, max(idx) AS hi, count(DISTINCT idx) AS distinct_idx FROM audit_entries',
    )).rows[0]!;
    const [total, numbered, lo, hi, distinct] = [stats.total, stats.numbered, stats.lo, stats.hi, stats.distinct_idx].map(Number) as [number, number, number, number, number];
    // every entry appended before the last checkpoint is numbered (admin records of the last requests may still wait)
    const log = (await db.query<{ size: unknown }>('SELECT size FROM audit_log')).rows[0]!;
    expect(lo).toBe(0);
    expect(hi).toBe(Number(log.size) - 1);
    expect(numbered).toBe(Number(log.size));
    expect(distinct).toBe(numbered);
    // only the final checkpoint requests' own admin records may still wait for the next integration
    expect(total - numbered).toBeLessThanOrEqual(cas.length);
    const issued = (await db.query<{ serial: string }>(`SELECT serial FROM audit_entries WHERE event = 'x509_svid.issued' AND idx IS NOT NULL`)).rows.map((r) => r.serial);
    expect(new Set(issued)).toEqual(serials);
    expect(serials.size).toBe(PER_REPLICA * 2 * cas.length);
    // and whichever replica is asked, the log verifies
    for (const ca of cas) {
      const r = await runCairnAsync(['audit', 'verify', '--server', ca.url, '--json'], { CAIRN_ADMIN_TOKEN: cas[0]!.adminToken, CAIRN_SERVER: undefined, CAIRN_CA_PIN: undefined, CAIRN_CA_FILE: undefined });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    }
  });
});

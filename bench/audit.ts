import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { AuditAppender } from '../ca/audit/port.js';
import { AuditStore } from '../ca/audit/store.js';
import type { Database } from '../ca/db/database.js';
import { openEmbedded } from '../ca/db/embedded.js';
import { migrate } from '../ca/db/migrate.js';
import { openPostgres } from '../ca/db/pg.js';
import { IssuanceService, type CsrRequest } from '../ca/issuance/service.js';
import { bundledMigrations } from '../ca/main.js';
import { buildCaCore } from '../ca/services.js';
import { systemClock } from '../lib/clock.js';
import { createLogger } from '../lib/log.js';
import { createCsr } from '../lib/pkcs10.js';
import { systemRandom } from '../lib/random.js';
import { SpiffeId } from '../spiffe/id.js';
import { fmt, machine, median, writeSection } from './harness.js';

const TD = 'audit.bench.test';
const BATCH = 100;

/** A database of its own on the bench's PostgreSQL (npm run bench starts one), else the embedded store. */
async function openBenchDb(): Promise<{ db: Database; kind: string; drop: () => Promise<void> }> {
  const url = process.env.DATABASE_URL;
  if (!url) {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-audit-'));
    const db = await openEmbedded(join(dir, 'pgdata'));
    return { db, kind: 'embedded (PGlite)', drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const name = `cairn_bench_audit_${process.pid}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name}`);
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(url);
  u.pathname = `/${name}`;
  const db = openPostgres({ connectionString: u.toString() });
  return {
    db,
    kind: 'PostgreSQL',
    drop: async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${name}`);
      await admin.end();
    },
  };
}

/** Runs `fn` (which returns how many operations it did) for about `ms`; operations per second. */
async function rate(fn: () => Promise<number>, ms: number): Promise<number> {
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    const done = await fn();
    n += done;
  }
  return (n * 1000) / (performance.now() - start);
}

/**
 * Issue 14's figures: batch X.509 issuance (the agent path: sign on the worker pool, then the
 * inventory rows and, with the log on, the audit entries in one transaction) with the audit log on,
 * as a ratio to the same issuance with it off, in alternating rounds of the same run; and how fast
 * entries are appended and integrated into the tree.
 */
export async function benchAudit(): Promise<void> {
  const { db, kind, drop } = await openBenchDb();
  const logger = createLogger({ level: 'silent' });
  const core = buildCaCore({ db, clock: systemClock, random: systemRandom, logger, kek: systemRandom.bytes(32), tlsEndpoint: async () => ({ url: 'https://127.0.0.1:8443', pin: 'sha256:x' }) });
  try {
    await migrate(db, bundledMigrations());
    await core.trustDomains.create({ name: TD, x509SvidTtlSeconds: 3600 }, 'bench');
    await core.audit.open();
    const off: AuditAppender = { append: async () => undefined, record: async () => undefined };
    const withoutLog = new IssuanceService({ clock: systemClock, random: systemRandom, logger, authority: core.authority, inventory: core.inventory, pool: core.issuancePool, audit: off, db });
    const csrs: CsrRequest[] = Array.from({ length: BATCH }, (_, i) => {
      const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      return { der: createCsr(pair.privateKey, pair.publicKey), policy: { spiffeId: SpiffeId.parse(`spiffe://${TD}/svc/${i}`), dnsNames: [] } };
    });
    const issue = (svc: IssuanceService) => async (): Promise<number> => (await svc.issueX509Batch(TD, csrs, 'spiffe://audit.bench.test/cairn/agent/bench')).length;
    await issue(core.issuance)();
    await issue(withoutLog)();
    const on: number[] = [];
    const offRates: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < 5; round++) {
      const b = await rate(issue(withoutLog), 2000);
      const c = await rate(issue(core.issuance), 2000);
      offRates.push(b);
      on.push(c);
      ratios.push(c / b);
    }

    // appends: many entries in one multi-row INSERT (a batch's), and one entry per transaction (a single SVID's)
    const events = (n: number) => Array.from({ length: n }, (_, i) => ({ event: 'x509_svid.issued', actor: 'bench', subject: { trustDomain: TD, spiffeId: `spiffe://${TD}/svc/${i}`, serial: systemRandom.bytes(16).toString('hex'), notAfter: new Date().toISOString() } }));
    const batched = await rate(async () => {
      await db.transaction((tx) => core.audit.append(tx, events(BATCH)));
      return BATCH;
    }, 3000);
    const single = await rate(async () => {
      await db.transaction((tx) => core.audit.append(tx, events(1)));
      return 1;
    }, 3000);
    // integration: numbering and hashing whatever is pending, as the checkpoint loop does
    const pending = await new AuditStore(db).pending();
    const t0 = performance.now();
    await core.audit.integrate();
    const integrated = (pending * 1000) / (performance.now() - t0);
    const size = await core.audit.size();

    const ratio = median(ratios);
    const md = `## Audit log (issue 14)

Machine: ${machine()}; store: ${kind}. Measured ${new Date().toISOString().slice(0, 10)}; 5 alternating rounds of 2 s, medians.

| what | figure | baseline | ratio | target |
|---|---:|---:|---:|---:|
| batch X.509 issuance (${BATCH} CSRs per batch: sign on the worker pool, inventory rows) with the audit log **on** (${BATCH} entries in the same transaction) | ${fmt(median(on))} SVIDs/s | ${fmt(median(offRates))} SVIDs/s with the log off, same run | **${ratio.toFixed(2)}** | ≥ 0.8 |
| audit entries appended, ${BATCH} per multi-row INSERT (a batch's) | ${fmt(batched)} entries/s | — | — | — |
| audit entries appended, one per transaction (a single SVID's) | ${fmt(single)} entries/s | — | — | — |
| entries integrated into the tree (numbered, leaf and subtree hashes stored, root) | ${fmt(integrated)} entries/s | ${fmt(pending)} pending entries | — | — |

Appending takes no lock beyond the row's own insert (entries are numbered later, in order, by one
integrator at a time), so issuance does not serialise on the log; the tree held ${fmt(size)} entries at the end.`;
    writeSection('audit', md);
    console.log(md);
  } finally {
    await core.issuancePool.close();
    await db.close();
    await drop();
  }
}

import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { startAgent, type AgentHandle } from '../../node-agent/main.js';
import { storeKind } from '../support/db.js';
import { firstMessage, grpc, grpcWorkloadClient, securityHeader, unary, type X509SvidWire } from '../support/grpc-workload.js';
import { capturingLogger } from '../support/logs.js';
import { startPrivatePostgres, type PrivatePostgres } from '../support/private-postgres.js';
import { freePort, spawnCairn, type Spawned } from '../support/processes.js';
import { slowScenario } from '../support/slow.js';
import { startCaProcess, type CaProcess } from '../support/ca-process.js';

const OUTAGE_MS = Number(process.env.CAIRN_OUTAGE_MS ?? 60_000);
const TD = 'outage.test';

type Phase = 'before' | 'outage' | 'after';
interface Outcome {
  readonly phase: Phase;
  readonly what: string;
  readonly status: number; // HTTP status; 0 = no answer within the client's timeout or a socket error
  readonly code?: string;
  readonly message?: string;
  readonly retryAfter?: string;
  readonly ms: number;
}

/**
 * Fault: the CA's PostgreSQL is stopped for 60 s while admins, signers and gateways keep calling and
 * a workload keeps asking its agent. The CA must answer at once with 503 `store_unavailable` (no
 * hangs, no 500s, no crash), the agent must keep serving what it holds, and when PostgreSQL returns
 * everything must recover without restarting anything — including the NOTIFY listener behind the
 * agents' long-poll. Runs on its own cluster: the suite's shared server must stay up.
 */
describe.runIf(storeKind() === 'postgres' && slowScenario())('fault: PostgreSQL stopped for 60 s under load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-pg-outage-'));
  chmodSync(dir, 0o755);
  let pgc: PrivatePostgres | undefined;
  let ca: Spawned | undefined;
  let agent: AgentHandle | undefined;
  afterAll(async () => {
    await agent?.close();
    await ca?.stop();
    pgc?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the CA answers 503 store_unavailable at once, agents keep serving, and all recovers without restarts', { timeout: 240_000 }, async () => {
    pgc = await startPrivatePostgres();
    const http = await freePort();
    ca = spawnCairn(['ca', 'start', '--listen', `127.0.0.1:${http}`, '--tls-listen', `127.0.0.1:${await freePort()}`], {
      CAIRN_DATA_DIR: join(dir, 'ca'),
      DATABASE_URL: pgc.url,
      CAIRN_ADMIN_TOKEN: undefined,
      CAIRN_SERVER: undefined,
    });
    await ca.waitFor(/listening on/, 60_000);
    const base = `http://127.0.0.1:${http}`;
    const adminToken = readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim();
    let phase: Phase = 'before';
    const outcomes: Outcome[] = [];
    const call = async (what: string, method: string, path: string, body?: unknown, auth = true): Promise<Outcome> => {
      const started = performance.now();
      const at = phase; // the phase the request was sent in
      let outcome: Outcome;
      try {
        const res = await fetch(base + path, {
          method,
          headers: { ...(auth ? { authorization: `Bearer ${adminToken}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(20_000),
        });
        const text = await res.text();
        const json = (res.headers.get('content-type') ?? '').includes('json') ? (JSON.parse(text) as { code?: string; message?: string }) : {};
        outcome = { phase: at, what, status: res.status, ...(res.status >= 400 ? { code: json.code, message: json.message, retryAfter: res.headers.get('retry-after') ?? undefined } : {}), ms: performance.now() - started };
      } catch {
        outcome = { phase: at, what, status: 0, ms: performance.now() - started };
      }
      outcomes.push(outcome);
      return outcome;
    };

    expect((await call('create trust domain', 'POST', '/v1/trust-domains', { name: TD })).status).toBe(201);
    const tok = await (await fetch(`${base}/v1/tokens`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ trustDomain: TD }) })).json() as { token: string; spiffeId: string };
    const uid = process.getuid!();
    expect((await call('entry', 'POST', '/v1/entries', { spiffeId: `spiffe://${TD}/held`, parentId: tok.spiffeId, selectors: [`unix:uid:${uid}`] })).status).toBe(201);
    agent = await startAgent({ dataDir: join(dir, 'agent'), joinToken: tok.token, socketPath: join(dir, 'api.sock') }, { logger: capturingLogger().logger });
    await agent.whenReady();

    // The workload: one stream held open throughout, plus fresh calls on new connections.
    const streamClient = grpcWorkloadClient(agent.socketPath);
    const stream = streamClient.FetchX509SVID!({}, securityHeader()) as grpc.ClientReadableStream<{ svids: X509SvidWire[] }>;
    const streamed: { svids: X509SvidWire[] }[] = [];
    const streamErrors: grpc.ServiceError[] = [];
    stream.on('data', (m: { svids: X509SvidWire[] }) => streamed.push(m));
    stream.on('error', (e: grpc.ServiceError) => streamErrors.push(e));
    const jwtClient = grpcWorkloadClient(agent.socketPath);
    await unary(jwtClient, 'FetchJWTSVID', { audience: ['orders'] }); // cached from here on
    const workload: { phase: Phase; ok: boolean; what: string }[] = [];
    const csr = generateKeyAndCsr('ec-p256').csr.toString('base64');

    let loadRunning = true;
    let n = 0;
    const loop = async (body: () => Promise<unknown>): Promise<void> => {
      while (loadRunning) {
        await body();
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const load = Promise.all([
      loop(() => call('create entry', 'POST', '/v1/entries', { spiffeId: `spiffe://${TD}/load/${n++}`, parentId: `spiffe://${TD}/elsewhere`, selectors: ['unix:uid:4242'] })),
      loop(() => call('list entries', 'GET', '/v1/entries?pageSize=5')),
      loop(() => call('sign X.509-SVID', 'POST', '/v1/x509-svids', { spiffeId: `spiffe://${TD}/signed`, csr })),
      loop(() => call('mint token', 'POST', '/v1/tokens', { trustDomain: TD })),
      loop(() => call('JWKS', 'GET', `/td/${TD}/jwks`, undefined, false)),
      loop(async () => {
        const c = grpcWorkloadClient(agent!.socketPath);
        try {
          const m = await firstMessage<{ svids: X509SvidWire[] }>(c, 'FetchX509SVID');
          workload.push({ phase, ok: m.svids.some((s) => s.spiffe_id === `spiffe://${TD}/held`), what: 'FetchX509SVID' });
        } catch {
          workload.push({ phase, ok: false, what: 'FetchX509SVID' });
        } finally {
          c.close();
        }
      }),
      loop(async () => {
        try {
          const r = await unary<{ svids: unknown[] }>(jwtClient, 'FetchJWTSVID', { audience: ['orders'] });
          workload.push({ phase, ok: r.svids.length === 1, what: 'FetchJWTSVID' });
        } catch {
          workload.push({ phase, ok: false, what: 'FetchJWTSVID' });
        }
      }),
    ]);

    try {
      await new Promise((r) => setTimeout(r, 3000));
      pgc.stop('immediate'); // a crash: no goodbye to the sessions, recovery on start
      phase = 'outage';
      const outageStarted = performance.now();
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      const outageMs = performance.now() - outageStarted;
      pgc.start();
      phase = 'after';
      const restarted = performance.now();
      // Recovery without restarts: the first admin write that succeeds after PostgreSQL is back.
      let recoveredMs = -1;
      while (performance.now() - restarted < 30_000) {
        if ((await call('recovery probe', 'POST', '/v1/entries', { spiffeId: `spiffe://${TD}/probe/${n++}`, parentId: `spiffe://${TD}/elsewhere`, selectors: ['unix:uid:4242'] })).status === 201) {
          recoveredMs = performance.now() - restarted;
          break;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(recoveredMs).toBeGreaterThanOrEqual(0);
      await new Promise((r) => setTimeout(r, 3000)); // a stretch of load after recovery
      loadRunning = false;
      await load;

      // --- the CA during the outage: fast, typed refusals; nothing else ---
      const during = outcomes.filter((o) => o.phase === 'outage');
      expect(during.length).toBeGreaterThan(200);
      // The JWKS was served before the outage: gateways keep getting it (the last published keys).
      const unexpected = during.filter((o) => (o.what === 'JWKS' ? o.status !== 200 : !(o.status === 503 && o.code === 'store_unavailable' && o.message && /^\d+$/.test(o.retryAfter ?? ''))));
      expect(unexpected).toEqual([]);
      const slowest = Math.max(...during.map((o) => o.ms));
      expect(slowest).toBeLessThan(6_000); // the pool's connect timeout bounds every answer
      expect(ca.child.exitCode).toBe(null);
      expect(ca.child.signalCode).toBe(null);
      // --- and after: everything answers again, on the same processes ---
      const settled = outcomes.filter((o) => o.phase === 'after' && o.what !== 'recovery probe' && o.ms > 0);
      const lastFailure = settled.filter((o) => o.status >= 500 || o.status === 0).at(-1);
      const afterRecovery = settled.slice(lastFailure ? settled.indexOf(lastFailure) + 1 : 0);
      expect(afterRecovery.length).toBeGreaterThan(20);
      expect(afterRecovery.filter((o) => o.status >= 300)).toEqual([]);
      expect(outcomes.filter((o) => o.status === 500 || o.status === 0)).toEqual([]);

      // --- the workload never noticed ---
      const workloadDuring = workload.filter((w) => w.phase === 'outage');
      expect(workloadDuring.length).toBeGreaterThan(100);
      expect(workload.filter((w) => !w.ok)).toEqual([]);
      expect(streamErrors).toEqual([]);

      // The agent syncs again without a restart; then a change must arrive through the CA's NOTIFY
      // listener (well before the 30 s long-poll would end on its own), proving it reconnected.
      const waitForSvid = async (id: string, ms: number): Promise<number> => {
        const t0 = performance.now();
        while (performance.now() - t0 < ms) {
          if (streamed.at(-1)?.svids.some((s) => s.spiffe_id === id)) return performance.now() - t0;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`${id} did not reach the open stream within ${ms} ms`);
      };
      expect((await call('entry', 'POST', '/v1/entries', { spiffeId: `spiffe://${TD}/after-1`, parentId: tok.spiffeId, selectors: [`unix:uid:${uid}`] })).status).toBe(201);
      await waitForSvid(`spiffe://${TD}/after-1`, 45_000); // the agent may be in its capped backoff
      expect((await call('entry', 'POST', '/v1/entries', { spiffeId: `spiffe://${TD}/after-2`, parentId: tok.spiffeId, selectors: [`unix:uid:${uid}`] })).status).toBe(201);
      const notifyMs = await waitForSvid(`spiffe://${TD}/after-2`, 10_000);
      expect(streamErrors).toEqual([]);
      expect(streamed.at(-1)!.svids.map((s) => s.spiffe_id).sort()).toEqual([`spiffe://${TD}/after-1`, `spiffe://${TD}/after-2`, `spiffe://${TD}/held`]);
      // Nothing was logged as an unexpected failure: refusals for a missing database are warnings.
      expect(ca.stderr()).not.toMatch(/"level":(50|60)/);

      if (process.env.CAIRN_RELIABILITY_DIR) {
        writeFileSync(
          join(process.env.CAIRN_RELIABILITY_DIR, 'pg-outage.json'),
          JSON.stringify({
            outageSeconds: Math.round(outageMs / 1000),
            requestsDuringOutage: during.length,
            answered503: during.filter((o) => o.status === 503).length,
            servedFromCache: during.filter((o) => o.status === 200).length,
            slowestMs: Math.round(slowest),
            workloadCallsDuringOutage: workloadDuring.length,
            workloadFailures: workload.filter((w) => !w.ok).length,
            recoveredMs: Math.round(recoveredMs),
            notifyMs: Math.round(notifyMs),
          }),
        );
      }
    } finally {
      loadRunning = false;
      await load.catch(() => undefined);
      stream.cancel();
      streamClient.close();
      jwtClient.close();
    }
  });
});

/**
 * Fault: PostgreSQL hangs instead of going away (every server process SIGSTOPped, as in a frozen VM
 * or a network partition without resets). The server's own statement_timeout cannot fire, so only
 * the CA's client-side timeouts stand between a request and a wait of hours: every request must get
 * its 503 within them, and everything must work again once the server resumes.
 */
describe.runIf(storeKind() === 'postgres' && slowScenario())('fault: PostgreSQL frozen (SIGSTOP) while requests wait on it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-pg-freeze-'));
  let pgc: PrivatePostgres | undefined;
  let ca: CaProcess | undefined;
  afterAll(async () => {
    await ca?.stop();
    pgc?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers 503 store_unavailable within its own timeouts, never hangs, and recovers when the server resumes', { timeout: 120_000 }, async () => {
    pgc = await startPrivatePostgres();
    ca = await startCaProcess({ dataDir: join(dir, 'ca'), databaseUrl: pgc.url });
    expect((await ca.admin('/v1/trust-domains', { name: TD })).status).toBe(201);
    const timed = async (path: string, body?: unknown) => {
      const t0 = performance.now();
      const res = await ca!.admin<{ code?: string }>(path, body);
      return { status: res.status, code: res.body.code, ms: performance.now() - t0 };
    };
    pgc.freeze(true);
    let during;
    try {
      during = await Promise.all([
        timed('/v1/entries'),
        timed('/v1/trust-domains'),
        timed('/v1/entries', { spiffeId: `spiffe://${TD}/frozen`, parentId: `spiffe://${TD}/elsewhere`, selectors: ['unix:uid:1'] }),
        timed('/v1/tokens', { trustDomain: TD }),
      ]);
      // a second wave while the first one's connections are still stuck
      during.push(...(await Promise.all([timed('/v1/entries'), timed('/v1/tokens', { trustDomain: TD })])));
    } finally {
      pgc.freeze(false);
    }
    for (const d of during) {
      expect(d).toMatchObject({ status: 503, code: 'store_unavailable' });
      expect(d.ms).toBeLessThan(20_000); // the pool's connect timeout (5 s) or its query timeout (16 s)
    }
    const t0 = performance.now();
    while ((await timed('/v1/entries', { spiffeId: `spiffe://${TD}/thawed`, parentId: `spiffe://${TD}/elsewhere`, selectors: ['unix:uid:1'] })).status !== 201) {
      if (performance.now() - t0 > 30_000) throw new Error('the CA did not recover after the database resumed');
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(ca.process.child.exitCode).toBe(null);
  });
});

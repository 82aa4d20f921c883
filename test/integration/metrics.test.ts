import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCa, type CaHandle } from '../../ca/main.js';
import { createCsr } from '../../lib/pkcs10.js';
import { callAs, createAdmin } from '../support/admins.js';
import { redeem } from '../support/agent-client.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { capturingLogger } from '../support/logs.js';
import { parsePrometheus, valueOf } from '../support/prometheus.js';
import { waitFor } from '../support/wait.js';

const TD = 'metrics.test';

const csr = (): string => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return createCsr(pair.privateKey, pair.publicKey).toString('base64');
};

describe(`CA metrics (${storeKind()} store)`, { timeout: 120_000 }, () => {
  let ca: TestCa;
  const scrape = async () => {
    const res = await fetch(`${ca.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return parsePrometheus(await res.text());
  };

  beforeAll(async () => {
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD, jwtIssuer: `${ca.url}/td/${TD}` } })).status).toBe(201);
  }, 120_000);
  afterAll(() => ca.close());

  it('counts SVIDs issued by kind, trust domain and result, with an issuance latency histogram', async () => {
    for (let i = 0; i < 3; i++) expect((await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/w${i}`, csr: csr() } })).status).toBe(201);
    expect((await ca.admin('/v1/jwt-svids', { body: { spiffeId: `spiffe://${TD}/w`, audience: ['a'] } })).status).toBe(201);
    // refused by issuance itself (a malformed request is refused before, and counted as an admin request)
    expect((await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}`, csr: csr() } })).status).toBe(400);
    const { samples, families } = await scrape();
    expect(valueOf(samples, 'cairn_svids_issued_total', { kind: 'x509', trust_domain: TD, result: 'ok' })).toBe(3);
    expect(valueOf(samples, 'cairn_svids_issued_total', { kind: 'jwt', trust_domain: TD, result: 'ok' })).toBe(1);
    expect(valueOf(samples, 'cairn_svids_issued_total', { kind: 'x509', trust_domain: TD, result: 'invalid_spiffe_id' })).toBe(1);
    expect(families.get('cairn_svid_issuance_seconds')).toBe('histogram');
    expect(valueOf(samples, 'cairn_svid_issuance_seconds_count', { kind: 'x509' })).toBeGreaterThanOrEqual(3);
    // a CA inside a test process does not report the process: only the CA process does
    expect(samples.some((s) => s.name.startsWith('process_') || s.name.startsWith('nodejs_'))).toBe(false);
  });

  it('counts attestations and token redemptions by result, and admin requests by route, role and status', async () => {
    const token = (await (await ca.admin('/v1/tokens', { body: { trustDomain: TD } })).json()).token as string;
    expect((await redeem(token)).status).toBe(201);
    expect((await redeem(token)).status).toBe(401);
    const viewer = await createAdmin(ca, { name: 'metrics-viewer', role: 'viewer' });
    expect((await callAs(ca, viewer, 'POST', '/v1/trust-domains', { name: 'nope.test' })).status).toBe(403);
    expect((await callAs(ca, 'cairn-admin.wrong', 'GET', '/v1/entries')).status).toBe(401);
    const { samples } = await scrape();
    expect(valueOf(samples, 'cairn_attestations_total', { method: 'join_token', result: 'ok' })).toBe(1);
    expect(valueOf(samples, 'cairn_token_redemptions_total', { result: 'ok' })).toBe(1);
    const refused = samples.filter((s) => s.name === 'cairn_token_redemptions_total' && s.labels.result !== 'ok');
    expect(refused.map((s) => [s.labels.result, s.value])).toEqual([['invalid_token', 1]]);
    expect(valueOf(samples, 'cairn_admin_requests_total', { route: 'POST /v1/trust-domains', role: 'viewer', status: '403' })).toBe(1);
    expect(valueOf(samples, 'cairn_admin_requests_total', { route: 'GET /v1/entries', role: 'none', status: '401' })).toBe(1);
    expect(valueOf(samples, 'cairn_admin_requests_total', { route: 'POST /v1/tokens', role: 'admin', status: '201' })).toBeGreaterThanOrEqual(1);
    // a path nobody registered does not become a label: a caller cannot grow the series
    await callAs(ca, viewer, 'GET', '/v1/no-such-route-x1');
    const again = (await scrape()).samples;
    expect(again.some((s) => JSON.stringify(s.labels).includes('no-such-route'))).toBe(false);
  });

  it("reports each trust domain's active authorities' expiry from the store", async () => {
    const keys = (await ca.handle.db.query<{ kind: string; not_after: Date }>(`SELECT kind, not_after FROM authority_keys WHERE trust_domain = $1 AND status = 'active'`, [TD])).rows;
    const { samples } = await scrape();
    for (const k of keys) {
      expect(valueOf(samples, 'cairn_authority_not_after_timestamp_seconds', { trust_domain: TD, kind: k.kind })).toBe(new Date(k.not_after).getTime() / 1000);
      expect(valueOf(samples, 'cairn_authority_last_rotation_timestamp_seconds', { trust_domain: TD, kind: k.kind })).toBeLessThanOrEqual(Date.now() / 1000);
    }
  });

  it('counts open sync long-polls, and the lag from an entry change to the agent that gets it', async () => {
    const token = (await (await ca.admin('/v1/tokens', { body: { trustDomain: TD } })).json()).token as string;
    const node = (await redeem(token)).node!;
    // an entry of another agent: the store's revision is past 0, which would ask for a full sync
    expect((await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/elsewhere`, parentId: `spiffe://${TD}/other-node`, selectors: ['unix:uid:1001', 'unix:gid:1001'] } })).status).toBe(201);
    const first = await node.call<{ revision: number; bundle: { sequence: number } }>('GET', '/agent/v1/sync?revision=0');
    expect(first.status).toBe(200);
    const poll = node.call<{ entries: unknown[] }>('GET', `/agent/v1/sync?revision=${first.body.revision}&bundleSequence=${first.body.bundle.sequence}&wait=30`);
    await waitFor('the long-poll to be counted', async () => (valueOf((await scrape()).samples, 'cairn_sync_connected_agents') === 1 ? true : undefined));
    expect((await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/synced`, parentId: node.spiffeId, selectors: ['unix:uid:1000', 'unix:gid:1000'] } })).status).toBe(201);
    expect((await poll).body.entries).toHaveLength(1);
    const { samples } = await scrape();
    expect(valueOf(samples, 'cairn_sync_connected_agents')).toBe(0);
    expect(valueOf(samples, 'cairn_sync_lag_seconds_count')).toBe(1);
    expect(valueOf(samples, 'cairn_sync_lag_seconds_sum')).toBeLessThan(30);
  });

  it('reports the audit log: entries, entries not yet numbered, and the newest checkpoint', async () => {
    const note = await callAs(ca, ca.adminToken, 'POST', '/v1/audit/checkpoint');
    expect(note.status).toBe(200);
    const size = Number(String(note.body).split('\n')[1]);
    expect(size).toBeGreaterThan(0);
    const { samples } = await scrape();
    expect(valueOf(samples, 'cairn_audit_checkpoint_size')).toBeGreaterThanOrEqual(size);
    expect(valueOf(samples, 'cairn_audit_log_entries')).toBeGreaterThanOrEqual(size);
    expect(valueOf(samples, 'cairn_audit_pending_entries')).toBeGreaterThanOrEqual(0);
    expect(Math.abs(valueOf(samples, 'cairn_audit_checkpoint_timestamp_seconds')! - Date.now() / 1000)).toBeLessThan(300);
  });

  it('serves /metrics on the plain listener to loopback callers only, never on the TLS listener', async () => {
    const far = await ca.app.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '192.0.2.7' });
    expect(far.statusCode).toBe(403);
    expect(far.json()).toMatchObject({ code: 'permission_denied' });
    expect(far.json().message).toContain('--metrics-listen');
    const tls = await ca.tlsApp.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '127.0.0.1' });
    expect(tls.statusCode).toBe(404);
  });
});

describe('--metrics-listen: a listener of its own', { timeout: 120_000 }, () => {
  let handle: CaHandle | undefined;
  afterAll(() => handle?.close());

  it('serves GET /metrics to anyone who reaches it, and nothing else', async () => {
    const dir = (await import('node:fs')).mkdtempSync((await import('node:path')).join((await import('node:os')).tmpdir(), 'cairn-metrics-'));
    handle = await startCa({ dataDir: dir, host: '127.0.0.1', port: 0, tlsPort: 0, metricsListen: { host: '127.0.0.1', port: 0 } }, { logger: capturingLogger().logger });
    expect(handle.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(handle.metricsUrl.startsWith(handle.url)).toBe(false);
    const res = await fetch(handle.metricsUrl);
    expect(res.status).toBe(200);
    expect(parsePrometheus(await res.text()).families.get('cairn_svids_issued_total')).toBe('counter');
    expect((await fetch(handle.metricsUrl.replace('/metrics', '/v1/entries'))).status).toBe(404);
    expect((await fetch(handle.metricsUrl, { method: 'POST' })).status).toBe(404);
  });
});

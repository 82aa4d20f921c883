import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { packageRoot } from '../../lib/paths.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { freePort, runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';
import { parsePrometheus, valueOf, type Sample } from '../support/prometheus.js';
import { waitFor } from '../support/wait.js';

const OBSERVABILITY = join(packageRoot(), 'deploy', 'observability');

/** The metric families a PromQL expression names (cairn_* only; the client library's own keep their names). */
const namesIn = (expr: string): string[] => [...expr.matchAll(/\bcairn_[a-z0-9_]+/g)].map((m) => m[0]!.replace(/_(bucket|sum|count)$/, ''));

/**
 * `cairn up` serves the CA's and the agent's metrics and names both in endpoints.json; a workload's
 * calls show up in the agent's; every metric the shipped alert rules and dashboard use exists.
 */
describe(`metrics with real processes (${storeKind()} store)`, { timeout: 300_000 }, () => {
  let dataDir: string;
  let up: Spawned | undefined;
  let drop: (() => Promise<void>) | undefined;
  let endpoints: Record<string, string>;
  const families = new Set<string>();

  const scrape = async (url: string): Promise<Sample[]> => {
    const res = await fetch(url);
    expect(res.status).toBe(200);
    const parsed = parsePrometheus(await res.text());
    for (const name of parsed.families.keys()) families.add(name);
    return parsed.samples;
  };

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'cairn-metrics-e2e-'));
    let databaseUrl: string | undefined;
    if (storeKind() === 'postgres') ({ url: databaseUrl, drop } = await createPgDatabase());
    up = spawnCairn(['up', '--listen', `127.0.0.1:${await freePort()}`, '--tls-listen', '127.0.0.1:0'], { CAIRN_DATA_DIR: dataDir, DATABASE_URL: databaseUrl, CAIRN_SERVER: undefined, CAIRN_ADMIN_TOKEN: undefined });
    await up.waitFor(/Press Ctrl-C to stop/, 180_000);
    endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8'));
  }, 240_000);

  afterAll(async () => {
    await up?.stop();
    await drop?.();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('endpoints.json names both; the CA reports what it issued and its process', async () => {
    expect(endpoints.metricsUrl).toBe(`${endpoints.caUrl}/metrics`);
    expect(endpoints.agentMetricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    // the agent's own SVID, and the workload's (issued once the agent's sync brings its entry)
    const ca = await waitFor('the workload SVID to be issued', async () => {
      const s = await scrape(endpoints.metricsUrl!);
      return (valueOf(s, 'cairn_svids_issued_total', { kind: 'x509', trust_domain: 'example.org', result: 'ok' }) ?? 0) >= 2 ? s : undefined;
    });
    expect(valueOf(ca, 'cairn_attestations_total', { method: 'join_token', result: 'ok' })).toBe(1);
    expect(valueOf(ca, 'cairn_authority_not_after_timestamp_seconds', { trust_domain: 'example.org', kind: 'x509' })).toBeGreaterThan(Date.now() / 1000);
    expect(valueOf(ca, 'process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it("the agent reports a workload's calls by method and code, what it holds, and that it can mint", async () => {
    const fetched = await runCairnAsync(['svid', 'fetch', '--socket', `unix://${endpoints.socket}`], { CAIRN_DATA_DIR: dataDir });
    expect(fetched.status, fetched.stderr).toBe(0);
    const jwt = await runCairnAsync(['jwt', 'fetch', '--socket', `unix://${endpoints.socket}`, '--audience', 'metrics'], { CAIRN_DATA_DIR: dataDir });
    expect(jwt.status, jwt.stderr).toBe(0);
    const agent = await waitFor('the calls to be counted', async () => {
      const s = await scrape(endpoints.agentMetricsUrl!);
      return (valueOf(s, 'cairn_agent_workload_api_calls_total', { method: 'FetchX509SVID' }) ?? 0) >= 1 ? s : undefined;
    });
    expect(agent.filter((s) => s.name === 'cairn_agent_workload_api_calls_total' && s.labels.method === 'FetchJWTSVID').map((s) => s.labels.code)).toEqual(['OK']);
    expect(valueOf(agent, 'cairn_agent_workload_api_seconds_count', { method: 'FetchJWTSVID' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(agent, 'cairn_agent_workload_api_open_streams', { method: 'FetchX509SVID' })).toBe(0);
    expect(valueOf(agent, 'cairn_agent_identities')).toBe(1);
    expect(valueOf(agent, 'cairn_agent_svid_earliest_expiry_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000);
    expect(valueOf(agent, 'cairn_agent_sync_age_seconds')).toBeLessThan(120);
    expect(valueOf(agent, 'cairn_agent_jwt_svid_mintable')).toBe(1);
    // the agent's metrics listener answers /metrics and nothing else
    const bare = await fetch(endpoints.agentMetricsUrl!.replace('/metrics', '/'));
    expect(bare.status).toBe(404);
  });

  it('every metric the alert rules and the dashboard use exists', async () => {
    await scrape(endpoints.metricsUrl!);
    await scrape(endpoints.agentMetricsUrl!);
    const rules = parseYaml(readFileSync(join(OBSERVABILITY, 'prometheus-rules.yaml'), 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
    const exprs = rules.groups.flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })));
    const dashboard = JSON.parse(readFileSync(join(OBSERVABILITY, 'grafana-dashboard.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    exprs.push(...dashboard.panels.flatMap((p) => p.targets.map((t) => ({ where: `panel ${p.title}`, expr: t.expr }))));
    expect(exprs.length).toBeGreaterThan(15);
    const missing = exprs.flatMap(({ where, expr }) => namesIn(expr).filter((n) => !families.has(n)).map((n) => `${where}: ${n}`));
    expect(missing).toEqual([]);
    // the alerts the issue asks for are there
    const alerts = exprs.filter((e) => e.where.startsWith('alert')).map((e) => e.where);
    for (const a of ['CairnAuthorityExpiring', 'CairnRotationFailing', 'CairnAgentNotSyncing', 'CairnAuditCheckpointStale']) expect(alerts).toContain(`alert ${a}`);
  });
});

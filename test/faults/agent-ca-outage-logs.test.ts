import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../lib/clock.js';
import { startAgent, type AgentHandle } from '../../node-agent/main.js';
import { checkHealth, WorkloadApiClient } from '../../workload-api/client.js';
import { startCaOnTestStore } from '../support/ca-process.js';
import { storeKind } from '../support/db.js';
import { capturingLogger } from '../support/logs.js';
import { runCairnAsync } from '../support/processes.js';

/**
 * Fault: the CA is killed for a while under an agent with renewals due. Before, the agent logged
 * "SVID rotation failed; will retry" (and its own renewal's failure) every second for as long as the
 * outage lasted. Now each repeated call backs off (capped exponential, jitter) and its failure streak
 * is logged once at warn, then summed up in one line (how long, how many attempts) when it ends.
 */
describe(`fault: a CA outage under an agent is logged once per failing call, with a summary (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-outage-logs-'));
  chmodSync(dir, 0o755);
  let ca: Awaited<ReturnType<typeof startCaOnTestStore>> | undefined;
  let agent: AgentHandle | undefined;
  afterAll(async () => {
    await agent?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('bounded warnings during the outage; sync, rotation and renewal each report their streak when the CA returns', { timeout: 300_000 }, async () => {
    ca = await startCaOnTestStore(join(dir, 'ca'));
    expect((await ca.admin('/v1/trust-domains', { name: 'outage.test', x509SvidTtlSeconds: 300 })).status).toBe(201);
    const { body: tok } = await ca.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: 'outage.test' });
    const entry = await ca.admin('/v1/entries', { spiffeId: 'spiffe://outage.test/app', parentId: tok.spiffeId, selectors: [`unix:uid:${process.getuid!()}`], x509SvidTtl: 60 });
    expect(entry.status, JSON.stringify(entry.body)).toBe(201);

    // The agent's clock runs with real time plus an offset: moved past the half-life of every SVID
    // it holds (its own included), everything is due for renewal while the CA is away.
    let offsetMs = 0;
    const clock: Clock = { now: () => new Date(Date.now() + offsetMs) };
    const { logger, lines } = capturingLogger();
    agent = await startAgent({ dataDir: join(dir, 'agent'), joinToken: tok.token, socketPath: join(dir, 'api.sock') }, { clock, logger });
    await agent.whenReady();
    const client = new WorkloadApiClient(`unix://${agent.socketPath}`);
    try {
      expect((await client.fetchX509Context()).svids.map((s) => s.spiffeId)).toEqual(['spiffe://outage.test/app']);
    } finally {
      client.close();
    }

    const records = (): { level: number; event?: string; msg: string; failedForMs?: number; failedAttempts?: number }[] => lines().map((l) => JSON.parse(l));
    const waitFor = async (what: () => boolean, ms: number, label: string): Promise<void> => {
      const t0 = Date.now();
      while (!what()) {
        if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${label}; events seen: ${[...new Set(records().map((r) => r.event).filter(Boolean))].join(', ')}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const has = (event: string) => () => records().some((r) => r.event === event);

    await ca.kill();
    const killedAt = lines().length;
    offsetMs = 160_000; // past half of the agent SVID's 300 s and the workload SVIDs' 60 s
    await waitFor(() => ['agent.sync_failed', 'agent.rotation_failed', 'agent.renewal_failed'].every((e) => has(e)()), 60_000, 'the first failure of each call');
    await new Promise((r) => setTimeout(r, 20_000)); // an outage of 20 s more: ~20 ticks of the rotation loop

    const during = records().slice(killedAt);
    const warnings = during.filter((r) => r.level >= 40);
    // One warning per failing call (sync, rotation, own renewal), plus at most the SVIDs that expired
    // meanwhile; retries are at debug level. Before: a warning per second per call.
    expect(warnings.map((w) => w.msg).filter((m) => m === 'SVID rotation failed; will retry')).toHaveLength(1);
    expect(warnings.map((w) => w.msg).filter((m) => m === 'agent SVID renewal failed; will retry')).toHaveLength(1);
    expect(warnings.length).toBeLessThanOrEqual(5);
    // and it backed off: far fewer attempts than the 20+ seconds it waited
    expect(during.filter((r) => r.event === 'agent.rotation_failed').length).toBeLessThan(10);

    // An outage alone does not make the agent unhealthy; its own SVID expiring does.
    expect((await checkHealth(agent.socketPath)).status).toBe('SERVING');
    offsetMs = 400_000; // past the agent SVID's notAfter
    const unhealthy = await runCairnAsync(['agent', 'healthcheck', '--socket', agent.socketPath], { CAIRN_AGENT_SOCKET: undefined });
    expect(unhealthy.status).toBe(1);
    expect(unhealthy.stderr.trim()).toMatch(/^error: the agent on .* is not serving: the agent SVID expired at \d{4}-\d\d-\d\dT/);
    offsetMs = 160_000;

    await ca.start();
    await waitFor(() => ['agent.sync_recovered', 'agent.rotation_recovered', 'agent.renewal_recovered'].every((e) => has(e)()), 120_000, 'each streak\'s summary');
    offsetMs = 0;
    for (const event of ['agent.sync_recovered', 'agent.rotation_recovered', 'agent.renewal_recovered']) {
      const summary = records().find((r) => r.event === event)!;
      expect(summary.level, event).toBe(30);
      expect(summary.failedAttempts, event).toBeGreaterThanOrEqual(2);
      expect(summary.failedForMs, event).toBeGreaterThanOrEqual(15_000);
    }
    // The workload keeps being served through and after it.
    expect(agent.agent.health()).toEqual({ serving: true });
  });
});

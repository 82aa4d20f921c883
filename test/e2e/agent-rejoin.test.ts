import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startCaOnTestStore } from '../support/ca-process.js';
import { storeKind } from '../support/db.js';
import { runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';

/**
 * A join-token agent the CA stops accepting (evicted) cannot attest again by itself. Before, it kept
 * reusing its refused persisted SVID and looped forever on "is not an attested agent; attest again",
 * even when restarted with a new token. Now: a running agent that is refused exits non-zero with one
 * line saying what to do; a restart with the token it already used does the same; a restart with a
 * token this data dir has not used attests with it; a plain restart spends nothing.
 */
describe(`a join-token agent told to come back, comes back (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-rejoin-'));
  chmodSync(dir, 0o755);
  const running: Spawned[] = [];
  let ca: Awaited<ReturnType<typeof startCaOnTestStore>> | undefined;
  afterAll(async () => {
    for (const p of running) await p.stop();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const tokenFile = join(dir, 'join-token');
  const socket = join(dir, 'agent.sock');
  const dataDir = join(dir, 'data');
  const svidFile = join(dataDir, 'agent', 'agent-svid.json');

  const startAgentProcess = (): Spawned => {
    const p = spawnCairn(['agent', 'start', '--data-dir', dataDir, '--socket', socket, '--join-token-file', tokenFile], {
      CAIRN_JOIN_TOKEN: undefined, CAIRN_AGENT_SOCKET: undefined, CAIRN_DATA_DIR: undefined, CAIRN_LOG_LEVEL: 'info',
    });
    running.push(p);
    return p;
  };
  const newToken = async (): Promise<{ token: string; spiffeId: string }> => (await ca!.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: 'rejoin.test' })).body;
  const evict = async (spiffeId: string): Promise<void> => {
    const res = await fetch(`${ca!.httpUrl}/v1/agents/evict`, {
      method: 'POST',
      headers: { authorization: `Bearer ${readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ spiffeId }),
    });
    expect(res.status).toBe(204);
  };
  const healthy = async (): Promise<void> => {
    const r = await runCairnAsync(['agent', 'healthcheck', '--socket', socket, '--wait', '60s'], { CAIRN_AGENT_SOCKET: undefined });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  };
  /** Exits by itself (a supervisor would see it): the status and its error lines. */
  const exitOf = async (p: Spawned): Promise<{ status: number | null; errors: string[] }> => {
    const hung = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 90_000).unref());
    const status = await Promise.race([p.exited, hung]);
    if (status === 'hung') throw new Error(`the agent did not exit; its last output:\n${p.stdout()}\n${p.stderr().slice(-3000)}`);
    return { status, errors: p.stderr().split('\n').filter((l) => l.startsWith('error:')) };
  };
  const refusedLine = (spiffeId: string) =>
    new RegExp(`^error: the CA no longer accepts this agent's SVID \\(${spiffeId.replace(/[/.]/g, '\\$&')}: unauthenticated; it was evicted, or its SVID expired or was superseded\\): start the agent with a new join token \\(--join-token, --join-token-file or CAIRN_JOIN_TOKEN\\)$`);

  it('attests with the token file; a plain restart with the file still configured reuses the SVID and spends nothing', { timeout: 240_000 }, async () => {
    ca = await startCaOnTestStore(join(dir, 'ca'));
    expect((await ca.admin('/v1/trust-domains', { name: 'rejoin.test' })).status).toBe(201);
    const first = await newToken();
    writeFileSync(tokenFile, first.token + '\n', { mode: 0o600 });

    const a = startAgentProcess();
    await a.waitFor(/serving the Workload API/, 90_000);
    await healthy();
    const attested = JSON.parse(readFileSync(svidFile, 'utf8')) as { spiffeId: string; chainPem: string; joinTokenId?: string };
    expect(attested.spiffeId).toBe(first.spiffeId);
    expect(attested.joinTokenId).toBe(first.spiffeId.split('/').pop());
    expect(await a.stop()).toBe(0);

    const b = startAgentProcess();
    await b.waitFor(/serving the Workload API/, 90_000);
    expect(b.stderr()).toContain('reusing the persisted agent SVID');
    expect(b.stderr()).not.toContain('agent attested');
    await healthy();
    expect((JSON.parse(readFileSync(svidFile, 'utf8')) as { chainPem: string }).chainPem).toBe(attested.chainPem);
  });

  it('evicted while running: exits non-zero with one line saying to start it with a new join token', { timeout: 180_000 }, async () => {
    const b = running.at(-1)!;
    const { spiffeId } = JSON.parse(readFileSync(svidFile, 'utf8')) as { spiffeId: string };
    await evict(spiffeId);
    const { status, errors } = await exitOf(b);
    expect(status).toBe(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(refusedLine(spiffeId));
    // It did not loop: one refusal, not a line per retry.
    expect(b.stderr().match(/is not an attested agent/g)?.length ?? 0).toBeLessThanOrEqual(1);
  });

  it('restarted with the token it already used: exits with the same line instead of looping', { timeout: 180_000 }, async () => {
    const { spiffeId } = JSON.parse(readFileSync(svidFile, 'utf8')) as { spiffeId: string };
    const c = startAgentProcess();
    const { status, errors } = await exitOf(c);
    expect(status).toBe(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(refusedLine(spiffeId));
  });

  it('restarted with a NEW token: the new token wins over the refused persisted SVID', { timeout: 180_000 }, async () => {
    const second = await newToken();
    writeFileSync(tokenFile, second.token + '\n', { mode: 0o600 });
    const d = startAgentProcess();
    await d.waitFor(/serving the Workload API/, 90_000);
    expect(d.stderr()).toContain('a join token this agent has not used was given');
    await healthy();
    const saved = JSON.parse(readFileSync(svidFile, 'utf8')) as { spiffeId: string; joinTokenId?: string };
    expect(saved.spiffeId).toBe(second.spiffeId);
    expect(saved.joinTokenId).toBe(second.spiffeId.split('/').pop());
    expect(await d.stop()).toBe(0);
  });

  it('a persisted SVID from before tokens were recorded: reused while accepted, replaced by the configured token once refused', { timeout: 240_000 }, async () => {
    // As an agent of the previous version left it: no joinTokenId.
    const legacy = JSON.parse(readFileSync(svidFile, 'utf8')) as Record<string, unknown>;
    delete legacy.joinTokenId;
    writeFileSync(svidFile, JSON.stringify(legacy), { mode: 0o600 });
    const third = await newToken();
    writeFileSync(tokenFile, third.token + '\n', { mode: 0o600 });

    const e = startAgentProcess();
    await e.waitFor(/serving the Workload API/, 90_000);
    expect(e.stderr()).toContain('reusing the persisted agent SVID'); // accepted at first contact: the token is not spent
    expect(await e.stop()).toBe(0);

    await evict(legacy.spiffeId as string);
    const f = startAgentProcess();
    await f.waitFor(/serving the Workload API/, 90_000);
    expect(f.stderr()).toContain('the CA refuses the persisted agent SVID; attesting again with a join token');
    await healthy();
    expect((JSON.parse(readFileSync(svidFile, 'utf8')) as { spiffeId: string }).spiffeId).toBe(third.spiffeId);
  });
});

import { createPublicKey, X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentPaths, type X509SvidMessage } from '../../contract/agent-api.js';
import { parseBootstrapToken } from '../../contract/bootstrap-token.js';
import { createCsr, generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson } from '../../lib/tls-client.js';
import { startAgent, type AgentHandle } from '../../node-agent/main.js';
import { pendingAttestationKey } from '../../node-agent/storage/agent-state.js';
import { startCaOnTestStore } from '../support/ca-process.js';
import { storeKind } from '../support/db.js';
import { capturingLogger } from '../support/logs.js';

/**
 * Fault: the CA goes down (SIGKILL) after minting an agent's join token and before the agent's first
 * attestation. The agent must keep trying with the same key instead of dying, and attest once a CA
 * is back on the same data: its first issuance is retried, not lost.
 */
describe(`fault: the CA away at an agent's first attestation (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-attest-retry-'));
  chmodSync(dir, 0o755);
  let ca: Awaited<ReturnType<typeof startCaOnTestStore>> | undefined;
  let agent: AgentHandle | undefined;
  afterAll(async () => {
    await agent?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the agent retries its attestation with the same key and attests when the CA returns', { timeout: 90_000 }, async () => {
    ca = await startCaOnTestStore(join(dir, 'ca'));
    expect((await ca.admin('/v1/trust-domains', { name: 'retry.test' })).status).toBe(201);
    const { body: tok } = await ca.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: 'retry.test' });
    await ca.kill();

    const { logger, lines } = capturingLogger();
    const starting = startAgent({ dataDir: join(dir, 'agent'), joinToken: tok.token, socketPath: join(dir, 'api.sock') }, { logger });
    let failed: unknown;
    starting.catch((err: unknown) => (failed = err));
    const t0 = Date.now();
    while (!lines().some((l) => l.includes('agent.attest_retry'))) {
      if (failed || Date.now() - t0 > 20_000) throw new Error(`the agent did not retry its attestation: ${String(failed)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await ca.start();
    agent = await starting;
    expect(agent.spiffeId).toBe(tok.spiffeId);
    await agent.whenReady();
  });

  it('an agent that died after the CA committed its redemption gets the same SVID from its pending key, with the same token', { timeout: 60_000 }, async () => {
    const { body: tok } = await ca!.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: 'retry.test' });
    const dataDir = join(dir, 'agent-2');
    // The first run: its key written down, the token redeemed with it, and then it died before it
    // could save the answer (the redemption is committed at the CA).
    const pending = pendingAttestationKey(dataDir, () => generateKeyAndCsr('ec-p256').privateKey);
    const { claims } = parseBootstrapToken(tok.token);
    const authority = await fetchPinnedAuthority(claims.url, claims.pin);
    const lost = await requestJson<X509SvidMessage>('POST', claims.url + AgentPaths.attest, { token: tok.token, csr: createCsr(pending, createPublicKey(pending)).toString('base64') }, { ca: authority });
    expect(lost.status).toBe(201);
    expect(readdirSync(dataDir)).toEqual(['attestation-key.pem']);
    // The restart, same token: no new token needed, the same SVID, and the pending key is cleared.
    const restarted = await startAgent({ dataDir, joinToken: tok.token, socketPath: join(dir, 'api-2.sock') }, { logger: capturingLogger().logger });
    try {
      expect(restarted.spiffeId).toBe(tok.spiffeId);
      await restarted.whenReady();
      // the SVID it saved is the one whose answer was lost: nothing new was signed
      const saved = JSON.parse(readFileSync(join(dataDir, 'agent-svid.json'), 'utf8')) as { chainPem: string };
      expect(new X509Certificate(saved.chainPem).raw.toString('base64')).toBe(lost.body.chain[0]);
      expect(readdirSync(dataDir)).not.toContain('attestation-key.pem');
    } finally {
      await restarted.close();
    }
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentPaths, type X509SvidMessage } from '../../contract/agent-api.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson } from '../../lib/tls-client.js';
import { pemBundle, pemChain } from '../support/agent-client.js';
import { startCaOnTestStore } from '../support/ca-process.js';
import { storeKind } from '../support/db.js';
import { opensslVerify } from '../support/openssl.js';

const TD = 'burst.test';

/**
 * Fault: the CA is killed (SIGKILL) in the middle of a burst of first attestations, wherever each one
 * happens to be, and started again on the same data (on the embedded store, PGlite's own crash
 * recovery). For every token, whatever its client saw, the retry with the same key must then
 * succeed with exactly one SVID recorded for that node: nothing half-recorded, nothing stranded.
 */
describe(`fault: the CA killed during a burst of first attestations (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-burst-kill-'));
  let ca: Awaited<ReturnType<typeof startCaOnTestStore>> | undefined;
  afterAll(async () => {
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every attestation is complete or absent, and its retry with the same key gets one recorded SVID', { timeout: 120_000 }, async () => {
    ca = await startCaOnTestStore(join(dir, 'ca'));
    expect((await ca.admin('/v1/trust-domains', { name: TD })).status).toBe(201);
    const { pin } = (await ca.admin<{ pin: string }>('/v1/ca/tls')).body;
    const authority = await fetchPinnedAuthority(ca.tlsUrl, pin);
    const nodes: { token: string; spiffeId: string; csr: string }[] = [];
    for (let i = 0; i < 40; i++) {
      const { body } = await ca.admin<{ token: string; spiffeId: string }>('/v1/tokens', { trustDomain: TD });
      nodes.push({ ...body, csr: generateKeyAndCsr('ec-p256').csr.toString('base64') });
    }
    const attest = (n: { token: string; csr: string }) => requestJson<X509SvidMessage>('POST', ca!.tlsUrl + AgentPaths.attest, { token: n.token, csr: n.csr }, { ca: authority, timeoutMs: 20_000 });

    const seen = new Map<string, X509SvidMessage>();
    const burst = Promise.all(
      nodes.map(async (n, i) => {
        await new Promise((r) => setTimeout(r, i * 10)); // spread over the kill
        const res = await attest(n).catch(() => undefined);
        if (res?.status === 201) seen.set(n.token, res.body);
      }),
    );
    // Kill once a few answers are out, with others in flight and more still to come.
    const t0 = Date.now();
    while (seen.size < 3 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 2));
    await ca.kill();
    await burst;
    await ca.start();

    let completedBefore = 0;
    for (const n of nodes) {
      const again = await attest(n);
      expect(again.status, `${n.spiffeId}: ${JSON.stringify(again.body)}`).toBe(201);
      const before = seen.get(n.token);
      if (before) {
        completedBefore++;
        expect(again.body.serial).toBe(before.serial); // an answer the client had is answered again, not replaced
      }
      const inventory = (await ca.admin<{ svids: { serial: string }[] }>(`/v1/x509-svids?spiffeIdPrefix=${encodeURIComponent(n.spiffeId)}`)).body.svids;
      expect(inventory.map((s) => s.serial), n.spiffeId).toEqual([again.body.serial]);
      const agent = (await ca.admin<{ agents: { spiffeId: string; serial: string }[] }>(`/v1/agents?trustDomain=${TD}&pageSize=100`)).body.agents.find((a) => a.spiffeId === n.spiffeId);
      expect(agent?.serial).toBe(again.body.serial);
    }
    const sample = seen.values().next().value ?? (await attest(nodes[0]!)).body;
    expect(opensslVerify(pemChain(sample), pemBundle(sample))).toContain('OK');
    // the kill landed inside the burst: some answers went out before it, some did not
    expect(completedBefore).toBeGreaterThan(0);
    expect(completedBefore).toBeLessThan(nodes.length);
  });
});

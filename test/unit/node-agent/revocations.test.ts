import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SyncResponse } from '../../../contract/agent-api.js';
import { NodeAgent } from '../../../node-agent/agent.js';
import { CaError, type CaClient } from '../../../node-agent/ca-client.js';
import { derToPem } from '../../../spiffe/bundle/bundle.js';
import { testCaCertificate } from '../../support/certs.js';
import { capturingLogger } from '../../support/logs.js';
import { waitFor } from '../../support/wait.js';

/**
 * The agent asks sync for revocations (`crl`). A CA of an older release refuses the unknown
 * parameter with 400 invalid_request: the agent must go on syncing without it, not fail forever.
 */
describe('node agent: revocations through sync', () => {
  it('syncs without the crl parameter once a CA that predates revocation refuses it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-agent-rev-'));
    const ca = await testCaCertificate('rev.test');
    const calls: (string | undefined)[] = [];
    const answer: SyncResponse = { revision: 1, full: true, parents: ['spiffe://rev.test/agent'], entries: [], removed: [], bundle: { sequence: 1, x509Authorities: [ca.der.toString('base64')], jwtAuthorities: [] } };
    const client = {
      credentials: { caUrl: 'https://ca.invalid', authorityPem: '', chainPem: derToPem(ca.der), keyPem: '' },
      async sync(_r: number, _b: number, wait: number, signal?: AbortSignal, crl?: string, federated?: string): Promise<SyncResponse> {
        // (a CA that predates revocation predates federation too: it refuses both parameters)
        if (federated !== undefined) throw new CaError(400, 'invalid_request', "querystring must NOT have additional properties");
        calls.push(crl);
        if (crl !== undefined) throw new CaError(400, 'invalid_request', "querystring must NOT have additional properties");
        if (wait > 0) await new Promise((r) => signal?.addEventListener('abort', r, { once: true }));
        return answer;
      },
      async issue() {
        return { bundle: [], results: [] };
      },
    } as unknown as CaClient;
    const { logger, text } = capturingLogger();
    const agent = new NodeAgent({ client, clock: { now: () => new Date() }, logger, dataDir: dir, spiffeId: 'spiffe://rev.test/agent', trustDomain: 'rev.test', identify: () => { throw new Error('unused'); } });
    const stop = new AbortController();
    const running = agent.run(stop.signal);
    await waitFor('the agent to sync', () => (agent.ready() ? true : undefined), 10_000);
    stop.abort();
    await running;
    expect(calls[0]).toBe('');
    expect(calls.slice(1).every((c) => c === undefined)).toBe(true);
    expect(text()).toContain('agent.revocations_unsupported');
    expect(agent.crls()).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('syncs without the federated parameter once a CA that predates federation refuses it, and keeps revocations', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-agent-fed-'));
    const ca = await testCaCertificate('fed.test');
    const calls: { crl: string | undefined; federated: string | undefined }[] = [];
    const answer: SyncResponse = { revision: 1, full: true, parents: ['spiffe://fed.test/agent'], entries: [], removed: [], bundle: { sequence: 1, x509Authorities: [ca.der.toString('base64')], jwtAuthorities: [] } };
    const client = {
      credentials: { caUrl: 'https://ca.invalid', authorityPem: '', chainPem: derToPem(ca.der), keyPem: '' },
      async sync(_r: number, _b: number, wait: number, signal?: AbortSignal, crl?: string, federated?: string): Promise<SyncResponse> {
        calls.push({ crl, federated });
        if (federated !== undefined) throw new CaError(400, 'invalid_request', "querystring must NOT have additional properties");
        if (wait > 0) await new Promise((r) => signal?.addEventListener('abort', r, { once: true }));
        return answer;
      },
      async issue() {
        return { bundle: [], results: [] };
      },
    } as unknown as CaClient;
    const { logger, text } = capturingLogger();
    const agent = new NodeAgent({ client, clock: { now: () => new Date() }, logger, dataDir: dir, spiffeId: 'spiffe://fed.test/agent', trustDomain: 'fed.test', identify: () => { throw new Error('unused'); } });
    const stop = new AbortController();
    const running = agent.run(stop.signal);
    await waitFor('the agent to sync', () => (agent.ready() ? true : undefined), 10_000);
    stop.abort();
    await running;
    expect(calls[0]).toEqual({ crl: '', federated: '' });
    expect(calls.slice(1).every((c) => c.federated === undefined && c.crl === '')).toBe(true);
    expect(text()).toContain('agent.federation_unsupported');
    expect(text()).not.toContain('agent.revocations_unsupported');
    rmSync(dir, { recursive: true, force: true });
  });
});

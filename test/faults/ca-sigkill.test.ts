import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../node-agent/main.js';
import { storeKind } from '../support/db.js';
import { grpc, grpcWorkloadClient, securityHeader, type X509SvidWire } from '../support/grpc-workload.js';
import { capturingLogger } from '../support/logs.js';
import { opensslVerify } from '../support/openssl.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { splitDerCertificates } from '../../spiffe/svid/x509.js';
import { startCaOnTestStore } from '../support/ca-process.js';

/**
 * Fault: the CA process is killed with SIGKILL (no shutdown, no goodbye) while an agent streams
 * SVIDs to a workload. The workload must keep its stream and its valid SVID; when a CA starts again
 * on the same data (after crash recovery of its database), changes reach the same stream.
 */
describe(`fault: the CA killed with SIGKILL under a streaming agent (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-sigkill-'));
  chmodSync(dir, 0o755);
  let ca: Awaited<ReturnType<typeof startCaOnTestStore>> | undefined;
  let agent: AgentHandle | undefined;
  afterAll(async () => {
    await agent?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the workload keeps its stream and SVID; after a restart on the same data, changes flow into the same stream', { timeout: 90_000 }, async () => {
    ca = await startCaOnTestStore(join(dir, 'ca'));
    const admin = (path: string, body?: unknown) => ca!.admin<Record<string, string>>(path, body);
    await admin('/v1/trust-domains', { name: 'kill.test' });
    const { body: tok } = await admin('/v1/tokens', { trustDomain: 'kill.test' });
    const uid = process.getuid!();
    await admin('/v1/entries', { spiffeId: 'spiffe://kill.test/before', parentId: tok.spiffeId, selectors: [`unix:uid:${uid}`] });
    agent = await startAgent({ dataDir: join(dir, 'agent'), joinToken: tok.token, socketPath: join(dir, 'api.sock') }, { logger: capturingLogger().logger });
    await agent.whenReady();

    const client = grpcWorkloadClient(agent.socketPath);
    const call = client.FetchX509SVID!({}, securityHeader()) as grpc.ClientReadableStream<{ svids: X509SvidWire[] }>;
    const messages: { svids: X509SvidWire[] }[] = [];
    const errors: grpc.ServiceError[] = [];
    let onMessage: (() => void) | undefined;
    call.on('data', (m: { svids: X509SvidWire[] }) => {
      messages.push(m);
      onMessage?.();
    });
    call.on('error', (e: grpc.ServiceError) => errors.push(e));
    const until = (pred: () => boolean, ms: number): Promise<void> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out waiting for the stream')), ms);
        onMessage = () => {
          if (pred()) {
            clearTimeout(timer);
            resolve();
          }
        };
        onMessage();
      });
    try {
      await until(() => messages.length >= 1, 10_000);

      const process_ = ca.process;
      await ca.kill();
      expect(process_.child.signalCode).toBe('SIGKILL'); // killed by the signal: no exit code
      await new Promise((r) => setTimeout(r, 3000)); // the agent notices and backs off
      expect(errors).toEqual([]);
      const held = messages.at(-1)!.svids[0]!;
      const chain = splitDerCertificates(held.x509_svid).map((d) => derToPem(d)).join('');
      expect(opensslVerify(chain, splitDerCertificates(held.bundle).map((d) => derToPem(d)).join(''))).toContain('OK');

      await ca.start(); // same data dir and ports: the agent's persisted CA URL still points here
      const created = await admin('/v1/entries', { spiffeId: 'spiffe://kill.test/after', parentId: tok.spiffeId, selectors: [`unix:uid:${uid}`] });
      expect(created.status).toBe(201);
      await until(() => messages.some((m) => m.svids.some((s) => s.spiffe_id === 'spiffe://kill.test/after')), 45_000);
      expect(errors).toEqual([]);
      // the identity held through the outage is still there alongside the new one
      expect(messages.at(-1)!.svids.map((s) => s.spiffe_id).sort()).toEqual(['spiffe://kill.test/after', 'spiffe://kill.test/before']);
    } finally {
      call.cancel();
      client.close();
    }
  });
});

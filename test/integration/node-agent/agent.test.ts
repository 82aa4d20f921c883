import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { derToPem } from '../../../spiffe/bundle/bundle.js';
import { splitDerCertificates } from '../../../spiffe/svid/x509.js';
import { startAgent, type AgentHandle } from '../../../node-agent/main.js';
import { startTestCa, type TestCa } from '../../support/ca.js';
import { storeKind } from '../../support/db.js';
import { fetchAsUid, firstMessage, grpc, grpcWorkloadClient, type X509SvidWire } from '../../support/grpc-workload.js';
import { capturingLogger } from '../../support/logs.js';
import { opensslVerify } from '../../support/openssl.js';

describe(`node agent against a real CA (${storeKind()} store)`, () => {
  let ca: TestCa;
  let agent: AgentHandle;
  let dir: string;
  const uid = process.getuid!();

  beforeAll(async () => {
    ca = await startTestCa();
    dir = mkdtempSync(join(tmpdir(), 'cairn-agent-'));
    chmodSync(dir, 0o755);
    await ca.admin('/v1/trust-domains', { body: { name: 'agent.test', x509SvidTtlSeconds: 120 } });
    const { token, spiffeId } = await (await ca.admin('/v1/tokens', { body: { trustDomain: 'agent.test' } })).json();
    await ca.admin('/v1/entries', { body: { spiffeId: 'spiffe://agent.test/me', parentId: spiffeId, selectors: [`unix:uid:${uid}`] } });
    await ca.admin('/v1/entries', { body: { spiffeId: 'spiffe://agent.test/nobody', parentId: spiffeId, selectors: ['unix:uid:4242'] } });
    agent = await startAgent({ dataDir: join(dir, 'agent'), joinToken: token, socketPath: join(dir, 'sock', 'api.sock') }, { logger: capturingLogger().logger });
    await agent.whenReady();
  });
  afterAll(async () => {
    await agent?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the caller its SVID, identified by kernel credentials; openssl verifies it against the bundle', async () => {
    const client = grpcWorkloadClient(agent.socketPath);
    const msg = await firstMessage<{ svids: X509SvidWire[] }>(client, 'FetchX509SVID');
    client.close();
    const svids = msg.svids;
    expect(svids.map((s) => s.spiffe_id)).toEqual(['spiffe://agent.test/me']);
    const leaf = splitDerCertificates(svids[0]!.x509_svid).map((d) => derToPem(d)).join('');
    const bundle = splitDerCertificates(svids[0]!.bundle).map((d) => derToPem(d)).join('');
    expect(opensslVerify(leaf, bundle)).toContain('OK');
  });

  it.runIf(process.getuid?.() === 0)('a caller under another uid with no entry gets PermissionDenied and is recorded for discovery', async () => {
    expect(await fetchAsUid(agent.socketPath, 3131)).toBe(`ERR ${grpc.status.PERMISSION_DENIED}`);
    expect(agent.agent.discovery.list().some((c) => c.selectors.includes('unix:uid:3131'))).toBe(true);
  });
});

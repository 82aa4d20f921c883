import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../../lib/paths.js';
import { derToPem } from '../../../spiffe/bundle/bundle.js';
import { splitDerCertificates } from '../../../spiffe/svid/x509.js';
import { startAgent, type AgentHandle } from '../../../node-agent/main.js';
import { startTestCa, type TestCa } from '../../support/ca.js';
import { storeKind } from '../../support/db.js';
import { capturingLogger } from '../../support/logs.js';
import { opensslVerify } from '../../support/openssl.js';

const require = createRequire(import.meta.url);
const PROTO = join(packageRoot(), 'workload-api/proto/workload.proto');
const proto = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, { keepCase: true, defaults: true })) as unknown as {
  SpiffeWorkloadAPI: new (address: string, creds: grpc.ChannelCredentials) => grpc.Client & Record<string, (...args: unknown[]) => unknown>;
};

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
    const client = new proto.SpiffeWorkloadAPI(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('workload.spiffe.io', 'true');
    const msg = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const call = client.FetchX509SVID!({}, md) as grpc.ClientReadableStream<Record<string, unknown>>;
      call.once('data', (m: Record<string, unknown>) => {
        resolve(m);
        call.cancel();
      });
      call.once('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? undefined : reject(e)));
    });
    client.close();
    const svids = msg.svids as { spiffe_id: string; x509_svid: Buffer; bundle: Buffer }[];
    expect(svids.map((s) => s.spiffe_id)).toEqual(['spiffe://agent.test/me']);
    const leaf = splitDerCertificates(svids[0]!.x509_svid).map((d) => derToPem(d)).join('');
    const bundle = splitDerCertificates(svids[0]!.bundle).map((d) => derToPem(d)).join('');
    expect(opensslVerify(leaf, bundle)).toContain('OK');
  });

  it.runIf(process.getuid?.() === 0)('a caller under another uid with no entry gets PermissionDenied and is recorded for discovery', async () => {
    const script = `
      const grpc=require(${JSON.stringify(require.resolve('@grpc/grpc-js'))});
      const pl=require(${JSON.stringify(require.resolve('@grpc/proto-loader'))});
      const p=grpc.loadPackageDefinition(pl.loadSync(${JSON.stringify(PROTO)},{keepCase:true}));
      const c=new p.SpiffeWorkloadAPI('unix://${agent.socketPath}',grpc.credentials.createInsecure());
      const md=new grpc.Metadata();md.set('workload.spiffe.io','true');
      const call=c.FetchX509SVID({},md);
      call.on('data',m=>{console.log('DATA '+m.svids.map(s=>s.spiffe_id).join());process.exit(0)});
      call.on('error',e=>{console.log('ERR '+e.code);process.exit(0)});`;
    const out = await new Promise<string>((resolve) => {
      const child = spawn('setpriv', ['--reuid=3131', '--regid=3131', '--clear-groups', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.on('exit', () => resolve(text.trim()));
    });
    expect(out).toBe(`ERR ${grpc.status.PERMISSION_DENIED}`);
    expect(agent.agent.discovery.list().some((c) => c.selectors.includes('unix:uid:3131'))).toBe(true);
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHealth } from '../../../workload-api/client.js';
import type { HealthState, WorkloadApiPorts } from '../../../workload-api/ports.js';
import { startWorkloadApiServer, type WorkloadApiServer } from '../../../workload-api/server.js';
import { runCairnAsync } from '../../support/processes.js';

/**
 * grpc.health.v1.Health beside the Workload API on its socket, called by @grpc/grpc-js with the
 * health proto that grpc's own grpc-health-check package ships (not ours): the standard service,
 * method paths and messages, no security header, no caller identity needed.
 */
const require = createRequire(import.meta.url);
const HEALTH_PROTO = join(dirname(require.resolve('grpc-health-check/package.json')), 'proto', 'health', 'v1', 'health.proto');

type Unary = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: { status: string }) => void) => grpc.ClientUnaryCall;
type HealthClient = grpc.Client & { Check: Unary; Watch: (req: object) => grpc.ClientReadableStream<{ status: string }> };
const { grpc: { health: { v1: { Health } } } } = grpc.loadPackageDefinition(protoLoader.loadSync(HEALTH_PROTO, { keepCase: true, enums: String, defaults: true })) as unknown as {
  grpc: { health: { v1: { Health: new (address: string, creds: grpc.ChannelCredentials) => HealthClient } } };
};

describe('grpc.health.v1.Health on the Workload API socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-health-'));
  const socketPath = join(dir, 'api.sock');
  const state: { health: HealthState } = { health: { serving: false, reason: 'not yet synced with the CA' } };
  let server: WorkloadApiServer;
  let client: HealthClient;
  beforeAll(async () => {
    const ports: WorkloadApiPorts = {
      ready: () => false,
      trustDomain: () => 'health.test',
      bundle: () => undefined,
      now: () => new Date(),
      onChange: () => () => undefined,
      attestConnection: () => ({
        workload: async () => {
          throw new Error('no caller is attested for a health check');
        },
        release: () => undefined,
      }),
    };
    // The kernel always names a Unix-socket peer; "no identity" here is a caller no entry matches.
    server = await startWorkloadApiServer({ socketPath, ports, peerOf: () => ({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() }), health: () => state.health });
    client = new Health(`unix://${socketPath}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const check = (service: string): Promise<{ status: string; reason: string | undefined }> =>
    new Promise((resolve, reject) => {
      let reason: string | undefined;
      const call = client.Check({ service }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve({ status: res.status, reason })));
      call.on('metadata', (md: grpc.Metadata) => (reason = md.get('cairn-health-reason')[0] as string | undefined));
    });

  it('Check answers NOT_SERVING (with the reason in a header) and SERVING, for the server and for SpiffeWorkloadAPI, to a caller with no identity and no security header', async () => {
    state.health = { serving: false, reason: 'not yet synced with the CA' };
    expect(await check('')).toEqual({ status: 'NOT_SERVING', reason: 'not yet synced with the CA' });
    expect(await check('SpiffeWorkloadAPI')).toMatchObject({ status: 'NOT_SERVING' });
    state.health = { serving: true };
    expect(await check('')).toEqual({ status: 'SERVING', reason: undefined });
    expect(await check('SpiffeWorkloadAPI')).toEqual({ status: 'SERVING', reason: undefined });
  });

  it('an unknown service is NOT_FOUND; Watch answers UNIMPLEMENTED', async () => {
    await expect(check('no.such.Service')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    const watched = await new Promise<grpc.ServiceError>((resolve) => client.Watch({ service: '' }).on('error', resolve).on('data', () => undefined));
    expect(watched.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it('our client reads the status and the reason', async () => {
    state.health = { serving: false, reason: 'the agent SVID expired at 2026-01-01T00:00:00.000Z' };
    expect(await checkHealth(`unix://${socketPath}`)).toEqual({ status: 'NOT_SERVING', reason: 'the agent SVID expired at 2026-01-01T00:00:00.000Z' });
    state.health = { serving: true };
    expect(await checkHealth(socketPath)).toEqual({ status: 'SERVING' });
  });

  it('`cairn agent healthcheck`: exit 0 with one line when serving, else one error line with the reason and exit 1', { timeout: 60_000 }, async () => {
    const env = { CAIRN_AGENT_SOCKET: undefined, SPIFFE_ENDPOINT_SOCKET: undefined };
    state.health = { serving: true };
    const ok = await runCairnAsync(['agent', 'healthcheck', '--socket', socketPath], env);
    expect(ok.status).toBe(0);
    expect(ok.stdout.trim().split('\n')).toEqual([`the agent on ${socketPath} is healthy: synced with the CA, holding a valid agent SVID, serving the Workload API`]);

    state.health = { serving: false, reason: 'not yet synced with the CA' };
    const down = await runCairnAsync(['agent', 'healthcheck', '--socket', `unix://${socketPath}`], env);
    expect(down.status).toBe(1);
    expect(down.stderr.trim().split('\n')).toEqual([`error: the agent on ${socketPath} is not serving: not yet synced with the CA`]);

    const none = await runCairnAsync(['agent', 'healthcheck', '--socket', join(dir, 'nobody.sock')], env);
    expect(none.status).toBe(1);
    expect(none.stderr.trim().split('\n')).toHaveLength(1);
    expect(none.stderr).toMatch(/^error: no agent answers on .*nobody\.sock/);
  });

  it('`--wait` keeps asking until the agent serves', { timeout: 60_000 }, async () => {
    state.health = { serving: false, reason: 'not yet synced with the CA' };
    const waiting = runCairnAsync(['agent', 'healthcheck', '--socket', socketPath, '--wait', '45s'], { CAIRN_AGENT_SOCKET: undefined });
    await new Promise((r) => setTimeout(r, 2000));
    state.health = { serving: true };
    const r = await waiting;
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('is healthy');
  });
});

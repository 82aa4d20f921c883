import { describe, expect, it } from 'vitest';
import { credentialSets, parseKubeCredentials } from '../../../ca/node-attestation/kube-credentials.js';
import { WindowLimiter } from '../../../ca/node-attestation/rate-limit.js';
import { UpstreamError, UpstreamGuard } from '../../../ca/node-attestation/upstream-guard.js';
import { CairnError } from '../../../lib/errors.js';
import { FakeClock } from '../../support/clock.js';
import { capturingLogger } from '../../support/logs.js';

const codeOf = async (p: Promise<unknown>): Promise<string | undefined> => {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err instanceof CairnError ? err.code : (err as Error).name;
  }
};

describe('the upstream guard of node attestation', () => {
  const options = { maxConcurrent: 2, maxQueued: 1, failureThreshold: 3, openMs: 10_000 };

  it('runs a few calls at a time, queues one, refuses the rest at once', async () => {
    const guard = new UpstreamGuard(new FakeClock(), capturingLogger().logger, options);
    const gates: (() => void)[] = [];
    let running = 0;
    let most = 0;
    const call = () => guard.run('k', () => new Promise<string>((resolve) => {
      running++;
      most = Math.max(most, running);
      gates.push(() => {
        running--;
        resolve('ok');
      });
    }));
    const calls = [call(), call(), call()];
    expect(await codeOf(call())).toBe('attestor_unavailable'); // 2 running, 1 waiting: the 4th is refused
    while (gates.length > 0 || running > 0) {
      gates.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    expect(await Promise.all(calls)).toEqual(['ok', 'ok', 'ok']);
    expect(most).toBe(2);
    // other keys have their own budget
    expect(await guard.run('other', async () => 'fine')).toBe('fine');
  });

  it('opens after consecutive upstream failures, lets one probe through after the cool-down, and closes on success', async () => {
    const clock = new FakeClock();
    const log = capturingLogger();
    const guard = new UpstreamGuard(clock, log.logger, options);
    let calls = 0;
    const failing = () => guard.run('k', async () => {
      calls++;
      throw new UpstreamError('the API at https://10.0.0.1 answered HTTP 500');
    });
    for (let i = 0; i < 3; i++) expect(await codeOf(failing())).toBe('attestor_unavailable');
    expect(calls).toBe(3);
    const open = await guard.run('k', async () => 'never').catch((e: CairnError) => e);
    expect(open).toMatchObject({ code: 'attestor_unavailable', details: { retryAfterSeconds: 10 } });
    expect((open as CairnError).message).not.toContain('10.0.0.1'); // the detail is the log's
    expect(log.text()).toContain('answered HTTP 500');
    clock.advance(10);
    expect(await codeOf(failing())).toBe('attestor_unavailable'); // the probe, failing: open again
    expect(calls).toBe(4);
    expect(await codeOf(guard.run('k', async () => 'x'))).toBe('attestor_unavailable');
    clock.advance(10);
    expect(await guard.run('k', async () => 'back')).toBe('back');
    expect(await guard.run('k', async () => 'still')).toBe('still');
  });

  it('counts a refusal of the caller (the upstream answered) as a success', async () => {
    const guard = new UpstreamGuard(new FakeClock(), capturingLogger().logger, options);
    for (let i = 0; i < 5; i++) expect(await codeOf(guard.run('k', async () => { throw new CairnError('unauthenticated', 'no'); }))).toBe('unauthenticated');
    expect(await guard.run('k', async () => 'open for business')).toBe('open for business');
  });
});

describe('Kubernetes credential sets of the CA', () => {
  it('parse NAME=api-server=URL,token-file=F[,ca-file=F]', () => {
    expect(parseKubeCredentials('prod=api-server=https://10.0.0.1:6443/,token-file=/etc/cairn/prod.token,ca-file=/etc/cairn/prod-ca.pem')).toEqual({
      name: 'prod', apiServer: 'https://10.0.0.1:6443', tokenFile: '/etc/cairn/prod.token', caFile: '/etc/cairn/prod-ca.pem',
    });
    for (const bad of ['prod', '=api-server=https://a,token-file=/t', 'prod=api-server=http://a,token-file=/t', 'prod=api-server=https://a', 'prod=api-server=https://a,token-file=/t,extra=1', 'prod=token-file=/t,token-file=/u,api-server=https://a']) {
      expect(() => parseKubeCredentials(bad), bad).toThrow();
    }
  });

  it('always offer in-cluster (the pod\'s service account, as client-go finds it) unless configured otherwise', () => {
    const sets = credentialSets([], { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' });
    expect(sets.get('in-cluster')).toMatchObject({ apiServer: 'https://10.96.0.1:443', tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token' });
    expect(credentialSets([], {}).get('in-cluster')?.apiServer).toBe('https://kubernetes.default.svc');
    const own = credentialSets([{ name: 'in-cluster', apiServer: 'https://x', tokenFile: '/t' }], {});
    expect(own.get('in-cluster')?.apiServer).toBe('https://x');
  });
});

describe('the per-source challenge limiter', () => {
  it('counts every take, successes included, per key and window', () => {
    const clock = new FakeClock();
    const limiter = new WindowLimiter(clock, 3, 60, 'x509pop challenges');
    for (let i = 0; i < 3; i++) limiter.take('a');
    expect(() => limiter.take('a')).toThrow(/too many x509pop challenges/);
    limiter.take('b');
    clock.advance(60);
    limiter.take('a');
  });
});

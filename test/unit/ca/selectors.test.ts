import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkSelectors, type SelectorUse } from '../../../ca/entries/selectors.js';
import { deviceIdentity } from '../../../ca/node-attestation/x509pop.js';
import { CairnError } from '../../../lib/errors.js';
import { AccountNames } from '../../../node-agent/caller/accounts.js';
import { K8sWorkloadAttestor } from '../../../node-agent/caller/k8s-attestor.js';
import { SystemdWorkloadAttestor } from '../../../node-agent/caller/systemd-attestor.js';
import { ExecutableHashCache, processFacts, unixSelectors } from '../../../node-agent/caller/unix-attestor.js';
import { FakeClock } from '../../support/clock.js';

const refusal = (selectors: string[], use: SelectorUse = 'workload', allowUnknownTypes = false): CairnError | undefined => {
  try {
    checkSelectors(selectors, use, { allowUnknownTypes });
    return undefined;
  } catch (err) {
    if (err instanceof CairnError) return err;
    throw err;
  }
};

describe('selector validation at the CA', () => {
  it('refuses the selectors that could never match, naming the selector and what is expected', () => {
    const cases: [string, RegExp][] = [
      ['uid:1', /"uid:1": unknown selector type "uid".*allowUnknownSelectorTypes/],
      ['unix:uid', /"unix:uid": expected unix:uid:<value> where the value is a decimal uid/],
      ['unix:userid:1', /"unix:userid:1": unix has no selector "userid"; expected .* uid, gid, user, group, supplementary_gid, supplementary_group, path, sha256/],
      ['unix:uid:abc', /"unix:uid:abc": expected unix:uid:<value> where the value is a decimal uid/],
      ['unix:uid:007', /decimal uid/],
      ['unix:uid:4294967295', /decimal uid/],
      ['unix:uid:-1', /decimal uid/],
      ['unix:sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789', /64 lowercase hex digits/],
      ['unix:path:usr/bin/app', /absolute path/],
      ['k8s:ns:Shop', /namespace/],
      ['k8s:pod-owner:Deployment:web', /k8s has no selector "pod-owner"/],
      ['k8s:pod-uid:not-a-uid', /pod UID/],
      ['k8s:pod-label:app', /<key>:<value>/],
      ['systemd:id:nginx', /service or scope unit name/],
      ['systemd:id:nginx.socket', /service or scope unit name/],
      ['systemd:fragment_path:nginx.service', /absolute path/],
    ];
    for (const [selector, message] of cases) {
      const err = refusal(['unix:uid:1000', selector]);
      expect(err?.code, selector).toBe('invalid_selector');
      expect(err?.message, selector).toMatch(message);
      expect(err?.details).toEqual({ selector });
    }
  });

  it('stores an unknown type only with the explicit opt-in, still checking the known ones', () => {
    expect(refusal(['unix:uid:1', 'docker:label:app:web'])?.code).toBe('invalid_selector');
    expect(refusal(['unix:uid:1', 'docker:label:app:web'], 'workload', true)).toBeUndefined();
    expect(refusal(['unix:uid:abc', 'docker:label:app:web'], 'workload', true)?.code).toBe('invalid_selector');
  });

  it('refuses a workload entry that any local process could match (issue 11: path and hash are not a boundary)', () => {
    const sha = 'a'.repeat(64);
    for (const weak of [
      ['unix:path:/usr/bin/app', `unix:sha256:${sha}`],
      ['unix:path:/usr/bin/app'],
      ['unix:supplementary_gid:100', 'unix:supplementary_group:users'],
      ['systemd:fragment_path:/usr/lib/systemd/system/user@.service'],
      ['k8s:node-name:worker-1', 'k8s:container-image:nginx:1.25'],
    ]) {
      const err = refusal(weak);
      expect(err?.code, weak.join(' ')).toBe('weak_selectors');
      expect(err?.message).toMatch(/let any local process match: add one that binds the caller .*unix:uid/);
    }
    for (const bound of [
      ['unix:uid:1000', 'unix:path:/usr/bin/app', `unix:sha256:${sha}`],
      ['unix:gid:50'],
      ['unix:user:www-data'],
      ['unix:group:web'],
      ['systemd:id:nginx.service', 'systemd:fragment_path:/usr/lib/systemd/system/nginx.service'],
      ['k8s:ns:shop', 'k8s:sa:cart'],
      ['k8s:pod-uid:5f0e7c2a-1111-4111-8111-000000000001'],
    ]) {
      expect(refusal(bound), bound.join(' ')).toBeUndefined();
    }
  });

  it('keeps node selectors on node aliases and tokens, workload selectors on workload entries', () => {
    expect(refusal(['k8s_psat:cluster:prod'])?.message).toMatch(/describe nodes: they belong on a node alias/);
    expect(refusal(['unix:uid:1'], 'node-alias')?.message).toMatch(/describe workloads/);
    expect(refusal(['k8s_psat:cluster:prod', 'join_token:rack:r1', `x509pop:ca:fingerprint:${'0'.repeat(40)}`], 'node-alias')).toBeUndefined();
    // a node alias with only node selectors is not "weak": node selectors come from the CA's node attestation
    expect(refusal(['x509pop:subject:cn:sensor 42'], 'node-alias')).toBeUndefined();
    expect(refusal(['join_token:rack:r1'], 'token')).toBeUndefined();
    expect(refusal(['k8s_psat:cluster:prod'], 'token')?.message).toMatch(/token's node selectors must be join_token:<label>/);
    expect(refusal(['join_token:'], 'token')?.code).toBe('invalid_selector');
    expect(refusal(['join_token:has space'], 'token')?.code).toBe('invalid_selector');
  });

  it('accepts every selector the agent and the CA produce', async () => {
    const produced: string[] = [];
    // unix, from this very process
    const facts = processFacts(process.pid, new ExecutableHashCache());
    produced.push(...(await unixSelectors({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() }, facts, new AccountNames())));
    expect(produced.some((s) => s.startsWith('unix:sha256:'))).toBe(true);
    // k8s, from a pod list shaped like the kubelet's
    const pods = {
      pods: async () => ({
        items: [{
          metadata: { name: 'web-7d4b9c-x2x9z', namespace: 'shop', uid: '5f0e7c2a-1111-4111-8111-000000000001', labels: { app: 'web', 'app.kubernetes.io/part-of': 'shop', empty: '' } },
          spec: { serviceAccountName: 'cart', nodeName: 'worker-1.eu-west-1.compute.internal', containers: [{ name: 'web', image: 'nginx:1.25' }] },
          status: { containerStatuses: [{ name: 'web', image: 'docker.io/library/nginx:1.25', imageID: 'docker.io/library/nginx@sha256:' + 'b'.repeat(64), containerID: 'containerd://' + 'c'.repeat(64) }] },
        }],
      }),
    };
    produced.push(...(await new K8sWorkloadAttestor({ pods }).selectorsFor({ podUid: '5f0e7c2a-1111-4111-8111-000000000001', containerId: 'c'.repeat(64) }, 1)));
    expect(produced.some((s) => s.startsWith('k8s:pod-label:app.kubernetes.io/part-of:shop'))).toBe(true);
    // systemd
    const systemd = new SystemdWorkloadAttestor({ clock: new FakeClock(new Date()), systemdRunning: () => true, show: async (id) => ({ id, fragmentPath: `/usr/lib/systemd/system/${id.replace(/@.*\./, '@.')}` }) });
    produced.push(...(await systemd.selectors('user@1000.service')), ...(await systemd.selectors('session-3.scope')), ...(await systemd.selectors('getty@tty1.service')));
    checkSelectors(produced, 'workload');

    // x509pop, from a real device certificate
    const dir = mkdtempSync(join(tmpdir(), 'cairn-sel-'));
    try {
      const openssl = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mfr.key', '-out', 'mfr.pem', '-days', '30', '-subj', '/CN=Acme Manufacturing CA']);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'device.key', '-out', 'device.csr', '-subj', '/CN=sensor 0042/O=Acme']);
      writeFileSync(join(dir, 'device.ext'), 'basicConstraints=CA:FALSE\nsubjectAltName=URI:urn:acme:sensor:0042,DNS:sensor-0042.acme.example,IP:10.0.0.42,IP:fd00::42,email:ops@acme.example\n');
      openssl(['x509', '-req', '-in', 'device.csr', '-CA', 'mfr.pem', '-CAkey', 'mfr.key', '-days', '30', '-out', 'device.pem', '-extfile', 'device.ext']);
      const der = (f: string): Buffer => Buffer.from(new X509Certificate(readFileSync(join(dir, f))).raw);
      const device = deviceIdentity([der('device.pem')], { anchor: new X509Certificate(der('mfr.pem')), path: [new X509Certificate(der('device.pem'))] });
      expect(device.selectors.length).toBeGreaterThanOrEqual(7);
      checkSelectors(device.selectors, 'node-alias');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // k8s_psat, as the CA's attestation builds them (ca/node-attestation/service.ts)
    checkSelectors([
      'k8s_psat:cluster:prod', 'k8s_psat:agent_ns:cairn', 'k8s_psat:agent_sa:cairn-agent', 'k8s_psat:agent_pod_name:cairn-agent-x7k2p',
      'k8s_psat:agent_pod_uid:5f0e7c2a-1111-4111-8111-000000000002', 'k8s_psat:agent_node_name:worker-1', 'k8s_psat:agent_node_uid:5f0e7c2a-1111-4111-8111-000000000001',
      'k8s_psat:agent_pod_label:app:cairn-agent', 'k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-west-1a', 'k8s_psat:agent_node_label:node-role.kubernetes.io/worker:',
    ], 'node-alias');
  });
});

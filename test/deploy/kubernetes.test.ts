import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { DEFAULT_PSAT_AUDIENCE } from '../../ca/node-attestation/service.js';
import { undocumentedFlags } from '../../cli/registry.js';
import { packageRoot } from '../../lib/paths.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { freePort, runCairn, runCairnAsync, spawnCairn } from '../support/processes.js';
import {
  containersOf, DIR, find, flag, get, kustomizeVersion, podSpecOf, referenceProblems, render, restrictedViolations,
  unknownFieldsOf, validate, validateModel, WORKLOAD_KINDS, type K8sObject,
} from './k8s-manifests.js';

const OVERLAYS = ['ca-postgres', 'agent', 'cluster', 'observability'] as const;
type Overlay = (typeof OVERLAYS)[number];
const README = () => readFileSync(join(DIR, 'README.md'), 'utf8');

/** The keys of the Secret cairn-ca as the README's `kubectl create secret` command makes it. */
function readmeSecretKeys(): string[] {
  const command = /kubectl -n cairn create secret generic cairn-ca[^`]*?```/s.exec(README())?.[0] ?? '';
  return [...command.matchAll(/--from-literal=([A-Za-z_]+)=/g)].map((m) => m[1]!).sort();
}

/**
 * Objects made at run time, not by the package: the operator's Secret (keys from the README) and the
 * ConfigMap the CA publishes (keys of ca/pin-configmap), with the values a live cluster would hold.
 */
function runtimeObjects(objects: readonly K8sObject[]): K8sObject[] {
  const out: K8sObject[] = [{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cairn-ca', namespace: 'cairn' }, data: Object.fromEntries(readmeSecretKeys().map((k) => [k, ''])) }];
  const ca = find(objects, 'Deployment', 'cairn-ca', 'cairn');
  const target = ca ? flag(containersOf(ca)[0].args, '--pin-configmap') : 'cairn/cairn-ca-pin'; // overlays/agent: a CA elsewhere keeps it
  const [namespace, name] = target!.split('/');
  out.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name!, namespace }, data: { 'ca-url': 'https://cairn-ca.cairn.svc:8443', 'ca-pin': `sha256:${'A'.repeat(43)}` } });
  return out;
}

const cairnContainers = (o: K8sObject) => containersOf(o).filter((c) => /^([^/]*\/)*cairn(:|@|$)/.test(c.image));
const envOf = (c: K8sObject) => Object.fromEntries((c.env ?? []).map((e: { name: string }) => [e.name, e]));

describe('deploy/kubernetes: the Kustomize package, rendered by kubectl kustomize', () => {
  const rendered = {} as Record<Overlay | 'base' | 'example', K8sObject[]>;
  beforeAll(() => {
    kustomizeVersion();
    for (const o of OVERLAYS) rendered[o] = render(`overlays/${o}`);
    rendered.base = render('base');
    rendered.example = render('example');
  });
  const ids = (objects: readonly K8sObject[]) => objects.map((o) => `${o.kind}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`);

  it('every overlay renders its parts once: base, CA, agents, observability', () => {
    const base = ids(rendered.base);
    expect(base).toEqual(expect.arrayContaining(['Namespace/cairn', 'ServiceAccount/cairn/cairn-ca', 'ClusterRole/cairn-ca', 'ClusterRoleBinding/cairn-ca',
      'ServiceAccount/cairn/cairn-agent', 'ClusterRole/cairn-agent', 'ClusterRoleBinding/cairn-agent', 'Role/cairn/cairn-ca-pin-publisher', 'RoleBinding/cairn/cairn-ca-pin-publisher']));
    const ca = ['Deployment/cairn/cairn-ca', 'Service/cairn/cairn-ca', 'PodDisruptionBudget/cairn/cairn-ca', 'NetworkPolicy/cairn/cairn-ca', 'Job/cairn/cairn-migrate'];
    const agent = ['DaemonSet/cairn/cairn-agent', 'CSIDriver/csi.spiffe.io', 'ServiceAccount/cairn/spiffe-csi-driver', 'DaemonSet/cairn/spiffe-csi-driver'];
    const observability = ['Service/cairn/cairn-ca-metrics', 'ServiceMonitor/cairn/cairn-ca', 'PodMonitor/cairn/cairn-agent', 'NetworkPolicy/cairn/cairn-agent', 'PrometheusRule/cairn/cairn', 'ConfigMap/cairn/cairn-grafana-dashboard'];
    const expected: Record<Overlay, string[]> = { 'ca-postgres': ca, agent, cluster: [...ca, ...agent], observability: [...ca, ...agent, ...observability] };
    for (const o of OVERLAYS) {
      const got = ids(rendered[o]);
      expect(new Set(got).size, o).toBe(got.length);
      expect(got, o).toEqual(expect.arrayContaining([...base, ...expected[o]]));
      for (const other of [...ca, ...agent, ...observability]) if (!expected[o].includes(other)) expect(got, `${o} has ${other}`).not.toContain(other);
    }
    // the agents' settings are generated, with a hash suffix: a change rolls the DaemonSet
    expect(rendered.agent.find((x) => x.kind === 'ConfigMap')?.metadata.name).toMatch(/^cairn-agent-[a-z0-9]{10}$/);
  });

  it('every object validates against the Kubernetes schema with no unknown fields', () => {
    const all = [...OVERLAYS.flatMap((o) => rendered[o]), ...rendered.example];
    for (const obj of all) {
      expect(() => validateModel(obj), `${obj.kind}/${obj.metadata.name}`).not.toThrow();
      expect(unknownFieldsOf(obj), `${obj.kind}/${obj.metadata.name}`).toEqual([]);
    }
  });

  it('no broken references (volumes, ConfigMaps, Secrets and keys, service accounts, roles, namespaces, ports, $(VAR)) once the Secret and the published pin exist', () => {
    for (const o of OVERLAYS) expect(referenceProblems([...rendered[o], ...runtimeObjects(rendered[o])]), o).toEqual([]);
    // without them, exactly those two are missing: nothing else is assumed to exist
    const missing = referenceProblems(rendered.cluster).join('\n');
    expect(missing).toMatch(/Secret cairn\/cairn-ca is not in the manifests/);
    expect(missing).toMatch(/ConfigMap cairn\/cairn-ca-pin is not in the manifests/);
    expect(missing.split('\n').every((l) => /cairn\/cairn-ca is not|cairn\/cairn-ca-pin is not/.test(l))).toBe(true);
  });

  it('no placeholder anywhere: no REPLACE_ME, no pin to paste', () => {
    for (const o of [...OVERLAYS, 'example'] as const) expect(JSON.stringify(rendered[o]), o).not.toMatch(/REPLACE_ME|CHANGE_ME|<[a-z -]+>/i);
    expect(find(rendered.cluster, 'Secret', 'cairn-ca')).toBeUndefined();
  });

  it('cairn runs only with flags the CLI documents', () => {
    for (const o of rendered.observability.filter((x) => WORKLOAD_KINDS.has(x.kind))) {
      for (const c of cairnContainers(o)) expect(undocumentedFlags(c.args ?? []), `${o.metadata.name}/${c.name}`).toEqual([]);
    }
  });

  it('the CA: ≥ 2 replicas on PostgreSQL with the shared secrets, no DDL at start, the pin published, probes on /readyz and /healthz, hardened', () => {
    const objects = rendered.cluster;
    const ca = get(objects, 'Deployment', 'cairn-ca', 'cairn');
    expect(ca.spec.replicas).toBeGreaterThanOrEqual(2);
    const [c] = containersOf(ca);
    expect(c.args.slice(0, 2)).toEqual(['ca', 'start']);
    expect(flag(c.args, '--listen')).toBe('0.0.0.0:8080');
    expect(flag(c.args, '--tls-listen')).toBe('0.0.0.0:8443');
    // the plain listener serves no admin route, not even to a same-pod proxy or a port-forward
    // (the string "off": YAML 1.1 would read a bare off as false)
    expect(flag(c.args, '--plain-admin')).toBe('off');
    expect(c.args).toContain('--no-migrate');
    const env = envOf(c);
    expect(env.DATABASE_URL.valueFrom.secretKeyRef).toEqual({ name: 'cairn-ca', key: 'DATABASE_URL' });
    expect(env.CAIRN_ADMIN_TOKEN.valueFrom.secretKeyRef).toEqual({ name: 'cairn-ca', key: 'CAIRN_ADMIN_TOKEN' });
    const kekMount = c.volumeMounts.find((m: { mountPath: string }) => env.CAIRN_KEK_FILE.value.startsWith(m.mountPath + '/'));
    const kekVolume = podSpecOf(ca).volumes.find((v: { name: string }) => v.name === kekMount.name);
    expect(kekVolume.secret.secretName).toBe('cairn-ca');
    expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
    expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
    expect(podSpecOf(ca).securityContext.runAsNonRoot).toBe(true);
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    const dataMount = c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === flag(c.args, '--data-dir'));
    expect(podSpecOf(ca).volumes.find((v: { name: string }) => v.name === dataMount.name).emptyDir).toBeDefined();
    // what the CA publishes as ca-url is its --tls-public-url: a name its certificate carries, the Service's
    const caUrl = new URL(flag(c.args, '--tls-public-url')!);
    expect(c.args.filter((_: string, i: number) => c.args[i - 1] === '--tls-san')).toContain(caUrl.hostname);
    const svc = get(objects, 'Service', 'cairn-ca', 'cairn');
    expect(svc.spec.ports.map((p: { name: string; port: number }) => [p.name, p.port])).toEqual([['http', 8080], ['tls', 8443]]);
    expect(caUrl.hostname.split('.').slice(0, 2)).toEqual([svc.metadata.name, svc.metadata.namespace]);
    expect(caUrl.port).toBe('8443');
  });

  it('the migration Job runs `cairn migrate` with the same image and a DDL-capable URL and goes away when done; CA replicas refuse to serve until it ran', async () => {
    const objects = rendered.cluster;
    const job = get(objects, 'Job', 'cairn-migrate', 'cairn');
    const [c] = containersOf(job);
    expect(c.args).toEqual(['migrate']);
    expect(c.image).toBe(containersOf(get(objects, 'Deployment', 'cairn-ca', 'cairn'))[0].image);
    expect(envOf(c).DATABASE_URL.valueFrom.secretKeyRef).toEqual({ name: 'cairn-ca', key: 'MIGRATION_DATABASE_URL' });
    expect(podSpecOf(job).restartPolicy).toBe('OnFailure');
    expect(job.spec.ttlSecondsAfterFinished).toBeGreaterThan(0);
    expect(job.spec.activeDeadlineSeconds).toBeGreaterThan(0);
    expect(restrictedViolations(podSpecOf(job))).toEqual([]);
    if (storeKind() !== 'postgres') return;
    // The Job's and the CA's command lines as the kubelet runs them, on a fresh PostgreSQL: before
    // the Job, a CA replica (--no-migrate) refuses to start; after it, the replica serves.
    const db = await createPgDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'cairn-k8s-ca-'));
    const ca = containersOf(get(objects, 'Deployment', 'cairn-ca', 'cairn'))[0];
    const [http, tls] = [await freePort(), await freePort()];
    const kekFile = join(dir, 'kek');
    writeFileSync(kekFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    const env = { DATABASE_URL: db.url, CAIRN_ADMIN_TOKEN: `cairn-admin.${randomBytes(24).toString('hex')}`, CAIRN_KEK_FILE: kekFile, KUBERNETES_SERVICE_HOST: undefined, CAIRN_LOG_LEVEL: 'info' };
    const caArgs = (ca.args as string[]).map((a) => ({ '0.0.0.0:8080': `127.0.0.1:${http}`, '0.0.0.0:8443': `127.0.0.1:${tls}`, '/var/lib/cairn': join(dir, 'data') })[a] ?? a);
    try {
      const early = await runCairnAsync(caArgs, env);
      expect(early.status).toBe(1);
      expect(early.stderr).toMatch(/^error: .*(schema|migrat)/m);
      const first = await runCairnAsync(c.args, { DATABASE_URL: db.url });
      expect(first.stderr).toBe('');
      expect(first.status).toBe(0);
      expect(first.stdout).toMatch(/migrated to schema version \d+/);
      const again = await runCairnAsync(c.args, { DATABASE_URL: db.url });
      expect(again.stdout).toMatch(/nothing to apply/);
      const replica = spawnCairn(caArgs, env);
      try {
        await replica.waitFor(/CA listening/, 60_000);
        expect((await runCairnAsync(['ca', 'healthcheck', '--server', `http://127.0.0.1:${http}`], {})).status).toBe(0);
        // outside a cluster the pin cannot be published: one clear line, and the CA serves on
        await replica.waitFor(/could not publish the CA's pin to ConfigMap cairn\/cairn-ca-pin: .*in-cluster.*token/, 30_000);
      } finally {
        await replica.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await db.drop();
    }
    // five processes of the CLI in a row, one of them a CA waited for up to a minute: a loaded machine needs more than the default
  }, 240_000);

  it("the README's Secret holds exactly the keys the manifests read", () => {
    const used = new Set<string>();
    for (const o of rendered.cluster.filter((x) => WORKLOAD_KINDS.has(x.kind))) {
      for (const c of containersOf(o)) for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef?.name === 'cairn-ca') used.add(e.valueFrom.secretKeyRef.key);
      for (const v of podSpecOf(o).volumes ?? []) if (v.secret?.secretName === 'cairn-ca') for (const i of v.secret.items ?? []) used.add(i.key);
    }
    expect(readmeSecretKeys()).toEqual([...used].sort());
    expect(readmeSecretKeys()).toEqual(['CAIRN_ADMIN_TOKEN', 'DATABASE_URL', 'MIGRATION_DATABASE_URL', 'kek']);
  });

  it('RBAC: the CA may create TokenReviews, get pods and nodes, and keep one ConfigMap; the agent only GET /pods on the kubelet', () => {
    const objects = rendered.cluster;
    expect(get(objects, 'ClusterRole', 'cairn-ca').rules).toEqual(expect.arrayContaining([
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      { apiGroups: [''], resources: expect.arrayContaining(['pods', 'nodes']), verbs: ['get'] },
    ]));
    expect(get(objects, 'ClusterRole', 'cairn-agent').rules).toEqual([{ apiGroups: [''], resources: ['nodes/pods'], verbs: ['get'] }]);
    // the pin: the CA writes the ConfigMap the agents read, and may change no other
    const [namespace, name] = flag(containersOf(get(objects, 'Deployment', 'cairn-ca', 'cairn'))[0].args, '--pin-configmap')!.split('/');
    const role = get(objects, 'Role', 'cairn-ca-pin-publisher', namespace);
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['configmaps'], resourceNames: [name], verbs: ['get', 'update'] },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
    ]);
    expect(get(objects, 'RoleBinding', 'cairn-ca-pin-publisher', namespace).subjects).toEqual([{ kind: 'ServiceAccount', name: 'cairn-ca', namespace: 'cairn' }]);
    const agentEnv = envOf(containersOf(get(objects, 'DaemonSet', 'cairn-agent', 'cairn'))[0]);
    expect(agentEnv.CAIRN_CA_PIN.valueFrom.configMapKeyRef).toEqual({ name, key: 'ca-pin' });
    expect(agentEnv.CAIRN_CA_URL.valueFrom.configMapKeyRef).toEqual({ name, key: 'ca-url' });
    expect(get(objects, 'Deployment', 'cairn-ca', 'cairn').spec.template.spec.serviceAccountName).toBe('cairn-ca');
    expect(get(objects, 'DaemonSet', 'cairn-agent', 'cairn').spec.template.spec.serviceAccountName).toBe('cairn-agent');
    // nodes/proxy (which also allows exec into any pod on the node) is granted by no overlay
    for (const o of OVERLAYS) {
      const grants = rendered[o].filter((x) => x.kind === 'ClusterRole' || x.kind === 'Role').flatMap((x) => (x.rules as { resources?: string[] }[]).flatMap((r) => r.resources ?? []));
      expect(grants, o).not.toContain('nodes/proxy');
    }
  });

  it('a site overlay as the README describes it: own image and settings, and the nodes/proxy fallback bound to the agent alone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-overlay-'));
    try {
      writeFileSync(join(dir, 'kustomization.yaml'), [
        'apiVersion: kustomize.config.k8s.io/v1beta1',
        'kind: Kustomization',
        // Kustomize takes other kustomizations by relative path only
        `resources: [${relative(dir, join(DIR, 'overlays/cluster'))}]`,
        `components: [${relative(dir, join(DIR, 'components/kubelet-nodes-proxy'))}]`,
        'images: [{ name: cairn, newName: registry.example/platform/cairn, newTag: 0.1.0 }]',
        'configMapGenerator:',
        '  - { name: cairn-agent, namespace: cairn, behavior: merge, literals: [trust-domain=prod.example, cluster=prod-eu] }',
        '',
      ].join('\n'));
      const objects = render(dir);
      for (const o of objects) {
        expect(() => validate(o)).not.toThrow();
      }
      expect(referenceProblems([...objects, ...runtimeObjects(objects)])).toEqual([]);
      const fallbackRole = get(objects, 'ClusterRole', 'cairn-agent-kubelet-proxy');
      expect(fallbackRole.rules).toEqual([{ apiGroups: [''], resources: ['nodes/proxy'], verbs: ['get'] }]);
      expect(get(objects, 'ClusterRoleBinding', 'cairn-agent-kubelet-proxy').subjects).toEqual([{ kind: 'ServiceAccount', name: 'cairn-agent', namespace: 'cairn' }]);
      const images = objects.filter((x) => WORKLOAD_KINDS.has(x.kind)).flatMap((x) => containersOf(x).map((c) => c.image as string));
      expect(images.filter((i) => i.includes('cairn'))).toEqual(expect.arrayContaining(['registry.example/platform/cairn:0.1.0']));
      expect(images.filter((i) => /(^|\/)cairn:/.test(i) && !i.startsWith('registry.example/'))).toEqual([]);
      const ds = get(objects, 'DaemonSet', 'cairn-agent', 'cairn');
      const ref = envOf(containersOf(ds)[0]).CAIRN_TRUST_DOMAIN.valueFrom.configMapKeyRef;
      expect(get(objects, 'ConfigMap', ref.name, 'cairn').data).toEqual({ 'trust-domain': 'prod.example', cluster: 'prod-eu' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the agent: hostPID, k8s_psat with a projected token of the audience the CA expects, kubelet workload attestation, state on the host', () => {
    const objects = rendered.agent;
    const ds = get(objects, 'DaemonSet', 'cairn-agent', 'cairn');
    const pod = podSpecOf(ds);
    const [c] = containersOf(ds);
    const args: string[] = c.args;
    expect(pod.hostPID).toBe(true);
    expect(args.slice(0, 2)).toEqual(['agent', 'start']);
    expect(flag(args, '--attestor')).toBe('k8s_psat');
    expect(flag(args, '--workload-attestor')).toBe('k8s');
    expect(flag(args, '--kubelet-url')).toBe('https://$(NODE_IP):10250');
    expect(flag(args, '--kubelet-token-file')).toBe('/var/run/secrets/kubernetes.io/serviceaccount/token');
    // the kubelet is verified, against the cluster CA from the service-account mount
    expect(args).not.toContain('--kubelet-skip-verify');
    expect(flag(args, '--kubelet-ca-file')).toBe('/var/run/secrets/kubernetes.io/serviceaccount/ca.crt');
    expect(pod.automountServiceAccountToken).toBe(true);
    const env = envOf(c);
    expect(env.NODE_IP.valueFrom.fieldRef.fieldPath).toBe('status.hostIP');
    expect(env.NODE_NAME.valueFrom.fieldRef.fieldPath).toBe('spec.nodeName');
    expect(env.NODE_OPTIONS.value).toBe('--max-semi-space-size=1');
    const settings = objects.find((x) => x.kind === 'ConfigMap' && x.metadata.name.startsWith('cairn-agent-'))!;
    for (const [f, name, key] of [['--trust-domain', settings.metadata.name, 'trust-domain'], ['--cluster', settings.metadata.name, 'cluster'], ['--ca-url', 'cairn-ca-pin', 'ca-url'], ['--ca-pin', 'cairn-ca-pin', 'ca-pin']] as const) {
      const ref = /^\$\((\w+)\)$/.exec(flag(args, f) ?? '')?.[1];
      expect(ref, f).toBeDefined();
      expect(env[ref!].valueFrom.configMapKeyRef, f).toEqual({ name, key });
    }
    expect(settings.data).toEqual({ 'trust-domain': 'example.org', cluster: 'demo-cluster' });

    // the token the agent is told to read is the projected one, minted for the CA's PSAT audience
    const tokenFile = flag(args, '--psat-token-file')!;
    const projected = pod.volumes.filter((v: { projected?: unknown }) => v.projected);
    const sources = projected.flatMap((v: { name: string; projected: { sources: { serviceAccountToken?: { audience: string; expirationSeconds: number; path: string } }[] } }) =>
      v.projected.sources.filter((s) => s.serviceAccountToken).map((s) => ({ volume: v.name, ...s.serviceAccountToken! })));
    expect(sources).toHaveLength(1);
    const token = sources[0]!;
    expect(token).toMatchObject({ audience: DEFAULT_PSAT_AUDIENCE, expirationSeconds: 600, path: 'cairn-agent' });
    const mount = c.volumeMounts.find((m: { name: string }) => m.name === token.volume);
    expect(`${mount.mountPath}/${token.path}`).toBe(tokenFile);
    expect(mount.readOnly).toBe(true);

    const hostPathOf = (mountPath: string) => {
      const m = c.volumeMounts.find((x: { mountPath: string }) => x.mountPath === mountPath);
      return pod.volumes.find((v: { name: string }) => v.name === m?.name)?.hostPath;
    };
    const socket = flag(args, '--socket')!;
    expect(socket).toBe('/run/cairn/sockets/agent.sock');
    expect(hostPathOf('/run/cairn/sockets')).toEqual({ path: '/run/cairn/sockets', type: 'DirectoryOrCreate' });
    expect(hostPathOf(flag(args, '--data-dir')!)).toEqual({ path: '/var/lib/cairn-agent', type: 'DirectoryOrCreate' });
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
  });

  it("the agent's probes ask its health service on its socket (`cairn agent healthcheck`), and the command fails clearly with no agent there", async () => {
    const ds = get(rendered.agent, 'DaemonSet', 'cairn-agent', 'cairn');
    const [c] = containersOf(ds);
    const socket = flag(c.args, '--socket')!;
    for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
      expect(probe.exec.command).toEqual(['node', '/opt/cairn/dist/cli/main.js', 'agent', 'healthcheck', '--socket', socket]);
      expect(probe.timeoutSeconds).toBeGreaterThanOrEqual(5); // a Node process start on a busy node
    }
    expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(300); // the first attestation retries for 5 minutes
    const dir = mkdtempSync(join(tmpdir(), 'cairn-k8s-probe-'));
    try {
      const [, , ...args] = c.readinessProbe.exec.command as string[];
      const r = await runCairnAsync(args.map((a) => a.split('/run/cairn/sockets').join(dir)), { NODE_OPTIONS: undefined, CAIRN_AGENT_SOCKET: undefined });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^error: no agent answers on ${dir}/agent\\.sock .*\\n$`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the agent's command line, with $(VAR)s expanded as the kubelet does from the published pin, gets past the CLI's parser", () => {
    const objects = [...rendered.agent, ...runtimeObjects(rendered.agent)];
    const ds = get(objects, 'DaemonSet', 'cairn-agent', 'cairn');
    const [c] = containersOf(ds);
    const env: Record<string, string> = {};
    for (const e of c.env) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom.configMapKeyRef) env[e.name] = get(objects, 'ConfigMap', e.valueFrom.configMapKeyRef.name, 'cairn').data[e.valueFrom.configMapKeyRef.key];
      else if (e.valueFrom.fieldRef) env[e.name] = { 'status.hostIP': '192.0.2.10', 'spec.nodeName': 'node-1' }[e.valueFrom.fieldRef.fieldPath as string]!;
    }
    const dir = mkdtempSync(join(tmpdir(), 'cairn-k8s-agent-'));
    try {
      const paths: Record<string, string> = { '/var/lib/cairn-agent': join(dir, 'state'), '/run/cairn/sockets': join(dir, 'sockets'), '/var/run/secrets/': join(dir, 'secrets') + '/' };
      // the service-account mount: the cluster CA the agent verifies the kubelet with
      mkdirSync(join(dir, 'secrets', 'kubernetes.io', 'serviceaccount'), { recursive: true });
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'secrets', 'kubernetes.io', 'serviceaccount', 'ca.crt'), '-days', '1', '-subj', '/CN=kubernetes'], { stdio: 'ignore' });
      const args = (c.args as string[]).map((a) => Object.entries(paths).reduce((x, [from, to]) => x.split(from).join(to), a.replace(/\$\((\w+)\)/g, (_, n: string) => env[n]!)));
      expect(args).toContain('https://192.0.2.10:10250');
      // no projected token here: the agent stops where it reads it, after every flag was accepted
      const r = runCairn(args, { ...env, CAIRN_LOG_LEVEL: 'error' });
      expect(r.stderr).not.toMatch(/Unknown option|needs --|must be/);
      expect(r.stderr).toMatch(/service-account token .*secrets\/tokens\/cairn-agent/);
      expect(r.status).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the agent verifies the kubelet by default: without a readable CA file it refuses to start, naming the flag', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-k8s-kubelet-'));
    try {
      const base = ['agent', 'start', '--data-dir', join(dir, 'state'), '--socket', join(dir, 'agent.sock'), '--workload-attestor', 'k8s', '--kubelet-url', 'https://192.0.2.10:10250'];
      const env = { CAIRN_LOG_LEVEL: 'error', CAIRN_JOIN_TOKEN: undefined };
      const explicit = runCairn([...base, '--kubelet-ca-file', join(dir, 'no-ca.crt')], env);
      expect(explicit.status).toBe(2);
      expect(explicit.stderr).toMatch(/cannot read --kubelet-ca-file .*no-ca\.crt: ENOENT; name the CA that signs the kubelet's serving certificate/);
      if (!existsSync('/var/run/secrets/kubernetes.io/serviceaccount/ca.crt')) {
        const byDefault = runCairn(base, env);
        expect(byDefault.status).toBe(2);
        expect(byDefault.stderr).toMatch(/cannot read the default --kubelet-ca-file \(the cluster CA\) \/var\/run\/secrets\/kubernetes\.io\/serviceaccount\/ca\.crt: ENOENT/);
      }
      const both = runCairn([...base, '--kubelet-ca-file', join(dir, 'no-ca.crt'), '--kubelet-skip-verify'], env);
      expect(both.status).toBe(2);
      expect(both.stderr).toMatch(/--kubelet-ca-file and --kubelet-skip-verify are alternatives/);
      // skipping verification is still possible, knowingly: the agent gets past the kubelet flags to the join token
      const skip = runCairn([...base, '--kubelet-skip-verify'], env);
      expect(skip.stderr).not.toMatch(/kubelet/);
      expect(skip.status).not.toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the SPIFFE CSI driver serves the directory the agent puts its socket in, registered with the kubelet under csi.spiffe.io', () => {
    const objects = rendered.agent;
    const driver = get(objects, 'CSIDriver', 'csi.spiffe.io');
    expect(driver.spec).toEqual({ attachRequired: false, podInfoOnMount: true, fsGroupPolicy: 'None', volumeLifecycleModes: ['Ephemeral'] });
    const ds = get(objects, 'DaemonSet', 'spiffe-csi-driver', 'cairn');
    const pod = podSpecOf(ds);
    const [plugin, registrar] = containersOf(ds);
    expect(plugin.image).toMatch(/^ghcr\.io\/spiffe\/spiffe-csi-driver:\d+\.\d+\.\d+$/);
    expect(registrar.image).toMatch(/^registry\.k8s\.io\/sig-storage\/csi-node-driver-registrar:v\d+\.\d+\.\d+$/);
    const volume = (c: K8sObject, mountPath: string) => {
      const m = c.volumeMounts.find((x: { mountPath: string }) => x.mountPath === mountPath);
      expect(m, `${c.name} mounts ${mountPath}`).toBeDefined();
      return { mount: m, volume: pod.volumes.find((v: { name: string }) => v.name === m.name) };
    };
    expect(flag(plugin.args, '-plugin-name')).toBe(driver.metadata.name);
    // the agent's socket directory on the host, read-only
    const agent = get(objects, 'DaemonSet', 'cairn-agent', 'cairn');
    const agentSocket = flag(containersOf(agent)[0].args, '--socket')!;
    const agentDir = podSpecOf(agent).volumes.find((v: { name: string }) => containersOf(agent)[0].volumeMounts.some((m: { name: string; mountPath: string }) => m.name === v.name && agentSocket === `${m.mountPath}/${basename(agentSocket)}`));
    const sockets = volume(plugin, flag(plugin.args, '-workload-api-socket-dir')!);
    expect(sockets.mount.readOnly).toBe(true);
    expect(sockets.volume.hostPath.path).toBe(agentDir.hostPath.path);
    // mounts it into pods' volume directories, which must propagate back to the kubelet
    expect(volume(plugin, '/var/lib/kubelet/pods').mount.mountPropagation).toBe('Bidirectional');
    expect(plugin.securityContext.privileged).toBe(true);
    // the registrar tells the kubelet where the driver's socket is on the host
    const csiSocket = flag(plugin.args, '-csi-socket-path')!;
    expect(flag(registrar.args, '-csi-address')).toBe(csiSocket);
    const registration = flag(registrar.args, '-kubelet-registration-path')!;
    expect(registration).toBe(`/var/lib/kubelet/plugins/${driver.metadata.name}/${basename(csiSocket)}`);
    const pluginDir = volume(plugin, csiSocket.slice(0, csiSocket.lastIndexOf('/')));
    expect(`${pluginDir.volume.hostPath.path}/${basename(csiSocket)}`).toBe(registration);
    expect(volume(registrar, '/registration').volume.hostPath.path).toBe('/var/lib/kubelet/plugins_registry');
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it('the example workload runs under Pod Security "restricted" and gets the socket from the CSI driver', () => {
    const objects = rendered.example;
    const ns = get(objects, 'Namespace', 'cairn-example');
    expect(ns.metadata.labels).toMatchObject({ 'pod-security.kubernetes.io/enforce': 'restricted' });
    const wl = get(objects, 'Deployment', 'example-workload', 'cairn-example');
    expect(restrictedViolations(podSpecOf(wl))).toEqual([]);
    const [c] = containersOf(wl);
    expect(c.args).toEqual(['svid', 'watch', '--write', '/var/run/svid']);
    const endpoint = envOf(c).SPIFFE_ENDPOINT_SOCKET.value as string;
    const mount = c.volumeMounts.find((m: { mountPath: string }) => endpoint === `unix://${m.mountPath}/agent.sock`);
    expect(mount, `a mount holding ${endpoint}`).toBeDefined();
    expect(mount.readOnly).toBe(true);
    expect(podSpecOf(wl).volumes.find((v: { name: string }) => v.name === mount.name).csi).toEqual({ driver: 'csi.spiffe.io', readOnly: true });
    // the socket file's name is the agent's
    const agentSocket = flag(containersOf(get(rendered.agent, 'DaemonSet', 'cairn-agent', 'cairn'))[0].args, '--socket')!;
    expect(endpoint.endsWith(`/${basename(agentSocket)}`)).toBe(true);
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    const svidMount = c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === '/var/run/svid');
    expect(podSpecOf(wl).volumes.find((v: { name: string }) => v.name === svidMount.name).emptyDir).toBeDefined();
    // the CA's pods and the migration Job would pass "restricted" too; only the node-level pods need "privileged"
    for (const o of rendered.cluster.filter((x) => WORKLOAD_KINDS.has(x.kind))) {
      const violations = restrictedViolations(podSpecOf(o));
      if (o.kind === 'DaemonSet') expect(violations.length, o.metadata.name).toBeGreaterThan(0);
      else expect(violations, o.metadata.name).toEqual([]);
    }
  });

  it('NetworkPolicy: public documents open to all; the TLS port (admin API, agents) only to the agents and labelled namespaces', () => {
    const objects = rendered.cluster;
    const np = get(objects, 'NetworkPolicy', 'cairn-ca', 'cairn');
    const ca = get(objects, 'Deployment', 'cairn-ca', 'cairn');
    const agent = get(objects, 'DaemonSet', 'cairn-agent', 'cairn');
    expect(Object.entries(np.spec.podSelector.matchLabels).every(([k, v]) => ca.spec.template.metadata.labels[k] === v)).toBe(true);
    expect(np.spec.policyTypes).toEqual(['Ingress']);
    const rules = np.spec.ingress as { from?: { podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: { matchLabels: Record<string, string> } }[]; ports: { port: string }[] }[];
    const forPort = (port: string) => rules.filter((r) => r.ports.some((p) => p.port === port));
    // http: one rule, no `from`, so anyone (gateways fetching the JWKS, the probes)
    expect(forPort('http')).toEqual([{ ports: [{ port: 'http', protocol: 'TCP' }] }]);
    // tls: never open to all
    const tls = forPort('tls');
    expect(tls.length).toBeGreaterThan(0);
    for (const r of tls) expect(r.from?.length, 'a rule opening the TLS port to everyone').toBeGreaterThan(0);
    const peers = tls.flatMap((r) => r.from!);
    const agentPeer = peers.find((p) => p.podSelector && !p.namespaceSelector)!;
    expect(Object.entries(agentPeer.podSelector!.matchLabels).every(([k, v]) => agent.spec.template.metadata.labels[k] === v)).toBe(true);
    expect(peers.find((p) => p.namespaceSelector)?.namespaceSelector).toEqual({ matchLabels: { 'cairn-ca-client': 'true' } });
    // the named ports are the CA container's: http is the plain listener, tls the TLS one
    const [c] = containersOf(ca);
    const ports = Object.fromEntries(c.ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]));
    expect(`0.0.0.0:${ports.http}`).toBe(flag(c.args, '--listen'));
    expect(`0.0.0.0:${ports.tls}`).toBe(flag(c.args, '--tls-listen'));
  });

  it('observability: metrics listeners scraped by ServiceMonitor and PodMonitor, open to the monitoring namespace alone; the rules and dashboard are the shipped ones', () => {
    const objects = rendered.observability;
    const fromMonitoring = [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }];
    const check = (workload: K8sObject, policy: K8sObject) => {
      const [c] = containersOf(workload);
      const port = c.ports.find((p: { name: string }) => p.name === 'metrics');
      expect(flag(c.args, '--metrics-listen'), workload.metadata.name).toBe(`0.0.0.0:${port.containerPort}`);
      const rules = (policy.spec.ingress as { from?: unknown[]; ports: { port: string }[] }[]).filter((r) => r.ports.some((p) => p.port === 'metrics'));
      expect(rules, policy.metadata.name).toEqual([{ from: fromMonitoring, ports: [{ port: 'metrics', protocol: 'TCP' }] }]);
      expect(Object.entries(policy.spec.podSelector.matchLabels).every(([k, v]) => workload.spec.template.metadata.labels[k] === v)).toBe(true);
    };
    const ca = get(objects, 'Deployment', 'cairn-ca', 'cairn');
    const agent = get(objects, 'DaemonSet', 'cairn-agent', 'cairn');
    check(ca, get(objects, 'NetworkPolicy', 'cairn-ca', 'cairn'));
    check(agent, get(objects, 'NetworkPolicy', 'cairn-agent', 'cairn'));
    // the agents' policy opens nothing else: their Workload API is a Unix socket
    expect(get(objects, 'NetworkPolicy', 'cairn-agent', 'cairn').spec.ingress).toHaveLength(1);
    const svc = get(objects, 'Service', 'cairn-ca-metrics', 'cairn');
    const sm = get(objects, 'ServiceMonitor', 'cairn-ca', 'cairn');
    expect(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => svc.metadata.labels?.[k] === v)).toBe(true);
    // the public Service must not be picked up as a metrics target
    expect(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => get(objects, 'Service', 'cairn-ca', 'cairn').metadata.labels?.[k] === v)).toBe(false);
    expect(sm.spec.endpoints.map((e: { port: string }) => e.port)).toEqual(svc.spec.ports.map((p: { name: string }) => p.name));
    const pm = get(objects, 'PodMonitor', 'cairn-agent', 'cairn');
    expect(Object.entries(pm.spec.selector.matchLabels).every(([k, v]) => agent.spec.template.metadata.labels[k] === v)).toBe(true);
    expect(pm.spec.podMetricsEndpoints.map((e: { port: string }) => e.port)).toEqual(['metrics']);
    const shipped = parseYaml(readFileSync(join(packageRoot(), 'deploy', 'observability', 'prometheus-rules.yaml'), 'utf8')) as { groups: unknown[] };
    expect(get(objects, 'PrometheusRule', 'cairn', 'cairn').spec.groups).toEqual(shipped.groups);
    const dashboard = get(objects, 'ConfigMap', 'cairn-grafana-dashboard', 'cairn');
    expect(dashboard.metadata.labels).toMatchObject({ grafana_dashboard: '1' });
    expect(dashboard.data['grafana-dashboard.json']).toBe(readFileSync(join(packageRoot(), 'deploy', 'observability', 'grafana-dashboard.json'), 'utf8'));
  });

  it("no admin credential travels in cleartext: only the CA holds it, and the README's admin instructions use the TLS port with the published pin", () => {
    for (const o of rendered.observability.filter((x) => WORKLOAD_KINDS.has(x.kind))) {
      for (const c of containersOf(o)) {
        const usesToken = (c.env ?? []).some((e: { name: string; valueFrom?: { secretKeyRef?: { key: string } } }) => e.name.startsWith('CAIRN_ADMIN_TOKEN') || e.valueFrom?.secretKeyRef?.key === 'CAIRN_ADMIN_TOKEN');
        expect(usesToken, `${o.metadata.name}/${c.name}`).toBe(o.metadata.name === 'cairn-ca');
      }
    }
    const readme = README();
    expect(readme).not.toMatch(/--server http:|port-forward \S+ 8080|CAIRN_SERVER=http:/);
    expect(readme).toMatch(/port-forward svc\/cairn-ca 8443/);
    expect(readme).toMatch(/CAIRN_SERVER=https:\/\/127\.0\.0\.1:8443/);
    expect(readme).toContain("CAIRN_CA_PIN=$(kubectl -n cairn get configmap cairn-ca-pin -o jsonpath='{.data.ca-pin}')");
  });

  it('the README names every part, the apply commands, the template that replaces per-pod entries and the cluster configuration', () => {
    const readme = README();
    for (const part of ['base/', 'components/ca/', 'components/agent/', 'components/observability/', 'components/kubelet-nodes-proxy/', 'example/', ...OVERLAYS.map((o) => `overlays/${o}/`)]) {
      expect(readme).toContain(`\`${part}\``);
      expect(existsSync(join(DIR, part, 'kustomization.yaml')), part).toBe(true);
    }
    expect(readme).toContain('kubectl apply -k deploy/kubernetes/overlays/cluster');
    expect(readme).toContain('kubectl apply -k deploy/kubernetes/example');
    expect(readme).toMatch(/cairn template create --trust-domain example\.org --parent-id \S+ \\\n\s+--spiffe-id-template 'spiffe:\/\/\{td\}\/ns\/\{k8s:ns\}\/sa\/\{k8s:sa\}'/);
    expect(readme).toContain('cairn attestor k8s-psat add');
    expect(readme).toContain('--kubelet-ca-file');
    expect(readme).toContain('kubectl -n cairn delete job cairn-migrate');
  });
});

describe('the manifest checks catch mistakes', () => {
  let objects: K8sObject[] = [];
  beforeAll(() => {
    objects = render('overlays/cluster');
  });
  const daemonSet = () => structuredClone(get(objects, 'DaemonSet', 'cairn-agent', 'cairn'));

  it('the unmodified DaemonSet passes', () => {
    expect(() => validate(daemonSet())).not.toThrow();
  });

  it('a misspelt field (hostPid) is an unknown field', () => {
    const ds = daemonSet();
    delete ds.spec.template.spec.hostPID;
    ds.spec.template.spec.hostPid = true;
    expect(unknownFieldsOf(ds)).toEqual(['spec.template.spec.hostPid']);
    expect(() => validate(ds)).toThrow(/hostPid/);
  });

  it('an unknown field deep inside a container is found too', () => {
    const ds = daemonSet();
    ds.spec.template.spec.containers[0].volumeMounts[0].readonly = true;
    expect(unknownFieldsOf(ds)).toEqual(['spec.template.spec.containers[0].volumeMounts[0].readonly']);
  });

  it('a wrong type (hostPID: "yes") fails the schema', () => {
    const ds = daemonSet();
    ds.spec.template.spec.hostPID = 'yes';
    expect(() => validateModel(ds)).toThrow(/hostPID/);
  });

  it("a wrong type in a Prometheus Operator object fails its CRD's schema", () => {
    const rule = structuredClone(get(render('overlays/observability'), 'PrometheusRule', 'cairn', 'cairn'));
    rule.spec.groups[0].rules = 'not a list';
    expect(() => validateModel(rule)).toThrow();
  });

  it('YAML 1.1 reads an unquoted yes as a boolean, as Kubernetes does', () => {
    const docs = parseAllDocuments('a: yes\nb: "yes"\n', { version: '1.1' });
    if (!Array.isArray(docs)) throw new Error('not a YAML stream');
    expect(docs[0]!.toJS()).toEqual({ a: true, b: 'yes' });
  });

  it('a volumeMount without its volume, a missing ConfigMap key and an undefined $(VAR) are broken references', () => {
    const broken = structuredClone(objects);
    const ds = broken.find((o) => o.kind === 'DaemonSet' && o.metadata.name === 'cairn-agent')!;
    const c = ds.spec.template.spec.containers[0];
    c.volumeMounts.push({ name: 'nope', mountPath: '/nope' });
    c.env.find((e: { name: string }) => e.name === 'CAIRN_CLUSTER').valueFrom.configMapKeyRef.key = 'no-such-key';
    c.args.push('--cluster', '$(UNDEFINED_VAR)');
    ds.spec.template.spec.serviceAccountName = 'ghost';
    const problems = referenceProblems(broken);
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/volumeMount nope names no volume/),
      expect.stringMatching(/ConfigMap cairn\/cairn-agent-\w+ has no key no-such-key/),
      expect.stringMatching(/\$\(UNDEFINED_VAR\) is not in its env/),
      expect.stringMatching(/ServiceAccount cairn\/ghost is not in the manifests/),
    ]));
  });

  it('"restricted" refuses a hostPath socket, a missing seccomp profile and privilege escalation', () => {
    const wl = structuredClone(get(render('example'), 'Deployment', 'example-workload', 'cairn-example'));
    const pod = podSpecOf(wl);
    pod.volumes[0] = { name: pod.volumes[0].name, hostPath: { path: '/run/cairn/sockets', type: 'Directory' } };
    delete pod.securityContext.seccompProfile;
    delete pod.containers[0].securityContext.allowPrivilegeEscalation;
    expect(restrictedViolations(pod)).toEqual([
      expect.stringMatching(/hostPath is not an allowed volume type/),
      expect.stringMatching(/allowPrivilegeEscalation must be false/),
      expect.stringMatching(/seccompProfile must be RuntimeDefault or Localhost/),
    ]);
  });

  it('an unknown CLI flag is reported', () => {
    expect(undocumentedFlags(['agent', 'start', '--socket', '/x', '--kubelet-insecure'])).toEqual(['--kubelet-insecure']);
  });
});

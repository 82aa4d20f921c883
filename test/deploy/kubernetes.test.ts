import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as clientModels from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_PSAT_AUDIENCE } from '../../ca/node-attestation/service.js';
import { undocumentedFlags } from '../../cli/registry.js';
import { packageRoot } from '../../lib/paths.js';
import { runCairn, runCairnAsync } from '../support/processes.js';

const DIR = join(packageRoot(), 'deploy', 'kubernetes');

/** A Kubernetes object as parsed; only the fields the invariants below read are typed. */
type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any };
interface Manifest {
  readonly file: string;
  readonly obj: K8sObject;
}

/** Every document of every deploy/kubernetes/*.yaml (or of `sub`/), parsed as YAML 1.1 as Kubernetes does ("yes" is a boolean there). */
function loadManifests(sub = ''): Manifest[] {
  const files = readdirSync(join(DIR, sub)).filter((f) => f.endsWith('.yaml')).sort().map((f) => (sub ? `${sub}/${f}` : f));
  if (!sub) expect(files.length).toBeGreaterThanOrEqual(4);
  const out: Manifest[] = [];
  for (const file of files) {
    const docs = parseAllDocuments(readFileSync(join(DIR, file), 'utf8'), { version: '1.1' });
    if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
    for (const [i, doc] of docs.entries()) {
      if (doc.errors.length > 0) throw new Error(`${file} document ${i}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const obj = doc.toJS() as K8sObject | null;
      if (obj === null) continue; // an empty document (comments only)
      out.push({ file, obj });
    }
  }
  return out;
}

// ---- schema: kubernetes-models (types, required fields, formats) ----------------------------------

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
};

function validateModel(obj: K8sObject): void {
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) throw new Error(`no kubernetes-models class for ${obj.apiVersion} ${obj.kind}; add it to MODELS`);
  new Model(obj as never).validate();
}

// ---- schema: unknown fields (kubernetes-models' JSON schemas allow them; the API server drops them) --

type Attribute = { readonly baseName: string; readonly type: string };
const typeMaps = clientModels as unknown as Record<string, { attributeTypeMap?: readonly Attribute[] } | undefined>;
/** The leaf types of @kubernetes/client-node's model graph; the walker checks their values no further. */
const LEAVES = new Set(['string', 'number', 'boolean', 'any', 'Date', 'V1MicroTime', 'IntOrString']);

/** Paths of fields no Kubernetes type declares, e.g. `spec.template.spec.hostPid`. */
function unknownFields(value: unknown, type: string, path: string, out: string[] = []): string[] {
  if (value === null || value === undefined) return out;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`, out));
    return out;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') for (const [k, v] of Object.entries(value)) unknownFields(v, map[1]!, `${path}.${k}`, out);
    return out;
  }
  const attributes = typeMaps[type]?.attributeTypeMap;
  if (!attributes) {
    if (!LEAVES.has(type)) out.push(`${path}: no model for type ${type}`);
    return out;
  }
  if (typeof value !== 'object' || Array.isArray(value)) return out; // a wrong type: kubernetes-models reports it
  const fields = new Map(attributes.map((a) => [a.baseName, a.type]));
  for (const [key, v] of Object.entries(value)) {
    const t = fields.get(key);
    if (t === undefined) out.push(path ? `${path}.${key}` : key);
    else unknownFields(v, t, path ? `${path}.${key}` : key, out);
  }
  return out;
}

function unknownFieldsOf(obj: K8sObject): string[] {
  const type = `V1${obj.kind}`;
  if (!typeMaps[type]?.attributeTypeMap) return [`no @kubernetes/client-node model ${type}`];
  return unknownFields(obj, type, '');
}

/** Both validators; throws with every problem found. */
function validate(obj: K8sObject): void {
  validateModel(obj);
  const unknown = unknownFieldsOf(obj);
  if (unknown.length > 0) throw new Error(`${obj.kind}/${obj.metadata?.name}: unknown fields ${unknown.join(', ')}`);
}

// ---- cross-object invariants ---------------------------------------------------------------------

const WORKLOAD_KINDS = new Set(['Deployment', 'DaemonSet', 'StatefulSet', 'Job']);

function find(manifests: Manifest[], kind: string, name: string, namespace?: string): K8sObject | undefined {
  return manifests.map((m) => m.obj).find((o) => o.kind === kind && o.metadata.name === name && (namespace === undefined || o.metadata.namespace === namespace));
}

function get(manifests: Manifest[], kind: string, name: string, namespace?: string): K8sObject {
  const obj = find(manifests, kind, name, namespace);
  if (!obj) throw new Error(`no ${kind} ${namespace ? `${namespace}/` : ''}${name} in deploy/kubernetes`);
  return obj;
}

const podSpecOf = (obj: K8sObject): any => obj.spec.template.spec;
const containersOf = (obj: K8sObject): any[] => [...(podSpecOf(obj).initContainers ?? []), ...podSpecOf(obj).containers];

/** The value following `flag` in a container's args. */
function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Broken references: volume mounts, ConfigMaps, Secrets (and their keys), service accounts, roles, namespaces. */
function referenceProblems(manifests: Manifest[]): string[] {
  const problems: string[] = [];
  const has = (kind: string, name: string, namespace?: string) => find(manifests, kind, name, namespace) !== undefined;
  const keysOf = (o: K8sObject) => new Set([...Object.keys(o.data ?? {}), ...Object.keys(o.stringData ?? {})]);
  const checkKey = (kind: 'ConfigMap' | 'Secret', name: string, key: string | undefined, ns: string, where: string) => {
    const target = find(manifests, kind, name, ns);
    if (!target) problems.push(`${where}: ${kind} ${ns}/${name} is not in the manifests`);
    else if (key !== undefined && !keysOf(target).has(key)) problems.push(`${where}: ${kind} ${ns}/${name} has no key ${key}`);
  };
  for (const { obj } of manifests) {
    const ns = obj.metadata.namespace;
    if (ns !== undefined && !has('Namespace', ns)) problems.push(`${obj.kind}/${obj.metadata.name}: namespace ${ns} is not in the manifests`);
    if (obj.kind === 'ClusterRoleBinding' || obj.kind === 'RoleBinding') {
      if (!has(obj.roleRef.kind, obj.roleRef.name)) problems.push(`${obj.kind}/${obj.metadata.name}: ${obj.roleRef.kind} ${obj.roleRef.name} is not in the manifests`);
      for (const s of obj.subjects ?? []) {
        if (s.kind === 'ServiceAccount' && !has('ServiceAccount', s.name, s.namespace)) problems.push(`${obj.kind}/${obj.metadata.name}: ServiceAccount ${s.namespace}/${s.name} is not in the manifests`);
      }
    }
    if (!WORKLOAD_KINDS.has(obj.kind)) continue;
    const where = `${obj.kind}/${obj.metadata.name}`;
    const pod = podSpecOf(obj);
    const namespace = ns ?? 'default';
    const sa = pod.serviceAccountName ?? 'default';
    if (!has('ServiceAccount', sa, namespace)) problems.push(`${where}: ServiceAccount ${namespace}/${sa} is not in the manifests`);
    const selector = obj.spec.selector?.matchLabels ?? {};
    for (const [k, v] of Object.entries(selector)) {
      if (obj.spec.template.metadata?.labels?.[k] !== v) problems.push(`${where}: the selector ${k}=${String(v)} does not match the pod template`);
    }
    const volumes = new Map<string, { [k: string]: unknown }>((pod.volumes ?? []).map((v: { name: string }) => [v.name, v]));
    for (const v of volumes.values()) {
      const cm = v.configMap as { name: string } | undefined;
      const secret = v.secret as { secretName: string; items?: { key: string }[] } | undefined;
      if (cm) checkKey('ConfigMap', cm.name, undefined, namespace, `${where} volume ${String(v.name)}`);
      if (secret) {
        checkKey('Secret', secret.secretName, undefined, namespace, `${where} volume ${String(v.name)}`);
        for (const item of secret.items ?? []) checkKey('Secret', secret.secretName, item.key, namespace, `${where} volume ${String(v.name)}`);
      }
      for (const source of (v.projected as { sources?: { configMap?: { name: string }; secret?: { name: string } }[] } | undefined)?.sources ?? []) {
        if (source.configMap) checkKey('ConfigMap', source.configMap.name, undefined, namespace, `${where} volume ${String(v.name)}`);
        if (source.secret) checkKey('Secret', source.secret.name, undefined, namespace, `${where} volume ${String(v.name)}`);
      }
    }
    for (const c of containersOf(obj)) {
      const cw = `${where} container ${c.name}`;
      for (const m of c.volumeMounts ?? []) if (!volumes.has(m.name)) problems.push(`${cw}: volumeMount ${m.name} names no volume`);
      const envNames = new Set<string>();
      for (const e of c.env ?? []) {
        envNames.add(e.name);
        if (e.valueFrom?.configMapKeyRef) checkKey('ConfigMap', e.valueFrom.configMapKeyRef.name, e.valueFrom.configMapKeyRef.key, namespace, `${cw} env ${e.name}`);
        if (e.valueFrom?.secretKeyRef) checkKey('Secret', e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key, namespace, `${cw} env ${e.name}`);
      }
      for (const e of c.envFrom ?? []) {
        if (e.configMapRef) checkKey('ConfigMap', e.configMapRef.name, undefined, namespace, `${cw} envFrom`);
        if (e.secretRef) checkKey('Secret', e.secretRef.name, undefined, namespace, `${cw} envFrom`);
      }
      // $(VAR) in args is expanded by the kubelet only for variables the container defines
      for (const arg of [...(c.command ?? []), ...(c.args ?? [])] as string[]) {
        for (const [, name] of arg.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) if (!envNames.has(name!)) problems.push(`${cw}: $(${name}) is not in its env`);
      }
      const ports = new Set((c.ports ?? []).map((p: { name?: string }) => p.name));
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        const port = probe?.httpGet?.port;
        if (typeof port === 'string' && !ports.has(port)) problems.push(`${cw}: a probe uses port ${port}, which the container does not name`);
      }
    }
  }
  for (const np of manifests.map((m) => m.obj).filter((o) => o.kind === 'NetworkPolicy')) {
    const pods = manifests.map((m) => m.obj).filter((o) => WORKLOAD_KINDS.has(o.kind) && o.metadata.namespace === np.metadata.namespace &&
      Object.entries(np.spec.podSelector?.matchLabels ?? {}).every(([k, v]) => o.spec.template.metadata?.labels?.[k] === v));
    if (pods.length === 0) problems.push(`NetworkPolicy/${np.metadata.name}: selects no pods`);
    for (const rule of np.spec.ingress ?? []) {
      for (const p of rule.ports ?? []) {
        if (typeof p.port === 'string' && !pods.some((b) => containersOf(b).some((c) => (c.ports ?? []).some((cp: { name?: string }) => cp.name === p.port)))) {
          problems.push(`NetworkPolicy/${np.metadata.name}: port ${p.port} is no container port name of the pods it selects`);
        }
      }
    }
  }
  for (const svc of manifests.map((m) => m.obj).filter((o) => o.kind === 'Service')) {
    const backends = manifests.map((m) => m.obj).filter((o) => WORKLOAD_KINDS.has(o.kind) && o.metadata.namespace === svc.metadata.namespace &&
      Object.entries(svc.spec.selector ?? {}).every(([k, v]) => o.spec.template.metadata?.labels?.[k] === v));
    if (backends.length === 0) problems.push(`Service/${svc.metadata.name}: selects no pods`);
    for (const p of svc.spec.ports ?? []) {
      if (typeof p.targetPort === 'string' && !backends.some((b) => containersOf(b).some((c) => (c.ports ?? []).some((cp: { name?: string }) => cp.name === p.targetPort)))) {
        problems.push(`Service/${svc.metadata.name}: targetPort ${p.targetPort} is no container port name`);
      }
    }
  }
  return problems;
}

// ---- the tests --------------------------------------------------------------------------------------

describe('deploy/kubernetes manifests', () => {
  const manifests = loadManifests();
  const objects = manifests.map((m) => m.obj);

  it('parse as YAML 1.1 and hold the expected objects', () => {
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`);
    expect(kinds).toEqual(expect.arrayContaining([
      'Namespace/cairn', 'ServiceAccount/cairn/cairn-ca', 'ClusterRole/cairn-ca', 'ClusterRoleBinding/cairn-ca',
      'ServiceAccount/cairn/cairn-agent', 'ClusterRole/cairn-agent', 'ClusterRoleBinding/cairn-agent',
      'Secret/cairn/cairn-ca', 'Deployment/cairn/cairn-ca', 'Service/cairn/cairn-ca',
      'ConfigMap/cairn/cairn-agent', 'DaemonSet/cairn/cairn-agent', 'Deployment/cairn-example/example-workload',
      'NetworkPolicy/cairn/cairn-ca',
    ]));
    expect(new Set(kinds).size).toBe(kinds.length);
  });

  it.each([...manifests, ...loadManifests('fallback')].map((m) => [`${m.file} ${m.obj.kind}/${m.obj.metadata?.name}`, m.obj] as const))('%s validates against the Kubernetes schema with no unknown fields', (_, obj) => {
    expect(() => validateModel(obj)).not.toThrow();
    expect(unknownFieldsOf(obj)).toEqual([]);
  });

  it('have no broken references (volumes, ConfigMaps, Secrets and keys, service accounts, roles, namespaces, ports, $(VAR))', () => {
    expect(referenceProblems(manifests)).toEqual([]);
  });

  it('run cairn only with flags the CLI documents', () => {
    for (const o of objects.filter((x) => WORKLOAD_KINDS.has(x.kind))) {
      for (const c of containersOf(o)) expect(undocumentedFlags(c.args ?? []), `${o.metadata.name}/${c.name}`).toEqual([]);
    }
  });

  it('the CA: ≥ 2 replicas on PostgreSQL with the shared secrets, probes on /readyz and /healthz, hardened', () => {
    const ca = get(manifests, 'Deployment', 'cairn-ca', 'cairn');
    expect(ca.spec.replicas).toBeGreaterThanOrEqual(2);
    const [c] = containersOf(ca);
    expect(c.args.slice(0, 2)).toEqual(['ca', 'start']);
    expect(flag(c.args, '--listen')).toBe('0.0.0.0:8080');
    expect(flag(c.args, '--tls-listen')).toBe('0.0.0.0:8443');
    // the plain listener serves no admin route, not even to a same-pod proxy or a port-forward
    // (the string "off": YAML 1.1 would read a bare off as false)
    expect(flag(c.args, '--plain-admin')).toBe('off');
    const env = Object.fromEntries(c.env.map((e: { name: string }) => [e.name, e]));
    expect(env.DATABASE_URL.valueFrom.secretKeyRef.name).toBe('cairn-ca');
    expect(env.CAIRN_ADMIN_TOKEN.valueFrom.secretKeyRef.name).toBe('cairn-ca');
    const kekMount = c.volumeMounts.find((m: { mountPath: string }) => env.CAIRN_KEK_FILE.value.startsWith(m.mountPath + '/'));
    const kekVolume = podSpecOf(ca).volumes.find((v: { name: string }) => v.name === kekMount.name);
    expect(kekVolume.secret.secretName).toBe('cairn-ca');
    expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
    expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
    expect(podSpecOf(ca).securityContext.runAsNonRoot).toBe(true);
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    const dataMount = c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === flag(c.args, '--data-dir'));
    expect(podSpecOf(ca).volumes.find((v: { name: string }) => v.name === dataMount.name).emptyDir).toBeDefined();
    // the agents reach the CA's TLS listener under a name its certificate carries
    const caUrl = new URL(get(manifests, 'ConfigMap', 'cairn-agent', 'cairn').data['ca-url']);
    expect(c.args.filter((_: string, i: number) => c.args[i - 1] === '--tls-san')).toContain(caUrl.hostname);
    expect(flag(c.args, '--tls-public-url')).toBe(caUrl.origin);
    const svc = get(manifests, 'Service', 'cairn-ca', 'cairn');
    expect(svc.spec.ports.map((p: { name: string; port: number }) => [p.name, p.port])).toEqual([['http', 8080], ['tls', 8443]]);
    expect(caUrl.hostname.split('.')[0]).toBe(svc.metadata.name);
    expect(caUrl.port).toBe('8443');
  });

  it('the Secret is an obvious template the CA would refuse as is', () => {
    const secret = get(manifests, 'Secret', 'cairn-ca', 'cairn');
    expect(Object.keys(secret.stringData).sort()).toEqual(['CAIRN_ADMIN_TOKEN', 'DATABASE_URL', 'kek']);
    for (const v of Object.values(secret.stringData)) expect(v).toContain('REPLACE_ME');
    expect((secret.stringData.CAIRN_ADMIN_TOKEN as string).length).toBeLessThan(32); // the CA refuses tokens under 32 characters
    expect(Buffer.from(secret.stringData.kek as string, 'base64').length).not.toBe(32);
    expect(readFileSync(join(DIR, '10-ca.yaml'), 'utf8')).toMatch(/TEMPLATE/);
  });

  it('RBAC: the CA may create TokenReviews and get pods and nodes; the agent only GET /pods on the kubelet (nodes/pods), nodes/proxy only in the fallback', () => {
    expect(get(manifests, 'ClusterRole', 'cairn-ca').rules).toEqual(expect.arrayContaining([
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      { apiGroups: [''], resources: expect.arrayContaining(['pods', 'nodes']), verbs: ['get'] },
    ]));
    expect(get(manifests, 'ClusterRole', 'cairn-agent').rules).toEqual([{ apiGroups: [''], resources: ['nodes/pods'], verbs: ['get'] }]);
    // nodes/proxy (which also allows exec into any pod on the node) is granted by no manifest applied by default…
    const grants = (ms: Manifest[]) => ms.filter((m) => m.obj.kind === 'ClusterRole' || m.obj.kind === 'Role').flatMap((m) => (m.obj.rules as { resources?: string[] }[]).flatMap((r) => r.resources ?? []));
    expect(grants(manifests)).not.toContain('nodes/proxy');
    // …only by the fallback for kubelets without fine-grained authorization, bound to the agent alone
    const fallback = loadManifests('fallback');
    expect(referenceProblems([...manifests, ...fallback])).toEqual([]);
    expect(get(fallback, 'ClusterRole', 'cairn-agent-kubelet-proxy').rules).toEqual([{ apiGroups: [''], resources: ['nodes/proxy'], verbs: ['get'] }]);
    expect(get(fallback, 'ClusterRoleBinding', 'cairn-agent-kubelet-proxy').subjects).toEqual([{ kind: 'ServiceAccount', name: 'cairn-agent', namespace: 'cairn' }]);
    expect(get(manifests, 'Deployment', 'cairn-ca', 'cairn').spec.template.spec.serviceAccountName).toBe('cairn-ca');
    expect(get(manifests, 'DaemonSet', 'cairn-agent', 'cairn').spec.template.spec.serviceAccountName).toBe('cairn-agent');
  });

  it('the agent: hostPID, k8s_psat with a projected token of the audience the CA expects, kubelet workload attestation, state on the host', () => {
    const ds = get(manifests, 'DaemonSet', 'cairn-agent', 'cairn');
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
    const env = Object.fromEntries(c.env.map((e: { name: string }) => [e.name, e]));
    expect(env.NODE_IP.valueFrom.fieldRef.fieldPath).toBe('status.hostIP');
    expect(env.NODE_NAME.valueFrom.fieldRef.fieldPath).toBe('spec.nodeName');
    expect(env.NODE_OPTIONS.value).toBe('--max-semi-space-size=1');
    for (const [f, key] of [['--trust-domain', 'trust-domain'], ['--cluster', 'cluster'], ['--ca-url', 'ca-url'], ['--ca-pin', 'ca-pin']] as const) {
      const ref = /^\$\((\w+)\)$/.exec(flag(args, f) ?? '')?.[1];
      expect(ref, f).toBeDefined();
      expect(env[ref!].valueFrom.configMapKeyRef, f).toEqual({ name: 'cairn-agent', key });
    }
    expect(get(manifests, 'ConfigMap', 'cairn-agent', 'cairn').data['ca-pin']).toMatch(/^sha256:/);

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

  it('the agent\'s probes ask its health service on its socket (`cairn agent healthcheck`), and the command fails clearly with no agent there', async () => {
    const ds = get(manifests, 'DaemonSet', 'cairn-agent', 'cairn');
    const [c] = containersOf(ds);
    const socket = flag(c.args, '--socket')!;
    const probes = [c.startupProbe, c.readinessProbe, c.livenessProbe];
    for (const probe of probes) {
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

  it('the agent\'s command line, with $(VAR)s expanded as the kubelet does, gets past the CLI\'s parser', () => {
    const ds = get(manifests, 'DaemonSet', 'cairn-agent', 'cairn');
    const [c] = containersOf(ds);
    const configMap = get(manifests, 'ConfigMap', 'cairn-agent', 'cairn');
    const env: Record<string, string> = {};
    for (const e of c.env) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom.configMapKeyRef) env[e.name] = configMap.data[e.valueFrom.configMapKeyRef.key];
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

  it('NetworkPolicy: public documents open to all; the TLS port (admin API, agents) only to the agents and labelled namespaces', () => {
    const np = get(manifests, 'NetworkPolicy', 'cairn-ca', 'cairn');
    const ca = get(manifests, 'Deployment', 'cairn-ca', 'cairn');
    const agent = get(manifests, 'DaemonSet', 'cairn-agent', 'cairn');
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

  it('no admin credential travels in cleartext: only the CA holds it, and the README\'s admin instructions use the TLS port with a pin', () => {
    for (const o of objects.filter((x) => WORKLOAD_KINDS.has(x.kind))) {
      for (const c of containersOf(o)) {
        const usesToken = (c.env ?? []).some((e: { name: string; valueFrom?: { secretKeyRef?: { key: string } } }) => e.name.startsWith('CAIRN_ADMIN_TOKEN') || e.valueFrom?.secretKeyRef?.key === 'CAIRN_ADMIN_TOKEN');
        expect(usesToken, `${o.metadata.name}/${c.name}`).toBe(o.metadata.name === 'cairn-ca');
      }
    }
    const readme = readFileSync(join(DIR, 'README.md'), 'utf8');
    expect(readme).not.toMatch(/--server http:|port-forward \S+ 8080|CAIRN_SERVER=http:/);
    expect(readme).toMatch(/port-forward svc\/cairn-ca 8443/);
    expect(readme).toMatch(/CAIRN_SERVER=https:\/\/127\.0\.0\.1:8443/);
    expect(readme).toMatch(/CAIRN_CA_PIN=/);
    expect(readme).toContain('fallback/agent-nodes-proxy.yaml');
  });

  it('the example workload mounts the socket directory read-only and points SPIFFE_ENDPOINT_SOCKET at the agent\'s socket', () => {
    const agent = get(manifests, 'DaemonSet', 'cairn-agent', 'cairn');
    const agentSocket = flag(containersOf(agent)[0].args, '--socket')!;
    const agentSocketVolume = podSpecOf(agent).volumes.find((v: { name: string }) =>
      containersOf(agent)[0].volumeMounts.some((m: { name: string; mountPath: string }) => m.name === v.name && agentSocket.startsWith(m.mountPath + '/')));
    const wl = get(manifests, 'Deployment', 'example-workload', 'cairn-example');
    const [c] = containersOf(wl);
    expect(c.args).toEqual(['svid', 'watch', '--write', '/var/run/svid']);
    const endpoint = c.env.find((e: { name: string }) => e.name === 'SPIFFE_ENDPOINT_SOCKET').value as string;
    expect(endpoint).toBe(`unix://${agentSocket}`);
    const mount = c.volumeMounts.find((m: { mountPath: string }) => agentSocket.startsWith(m.mountPath + '/'));
    expect(mount.readOnly).toBe(true);
    const volume = podSpecOf(wl).volumes.find((v: { name: string }) => v.name === mount.name);
    expect(volume.hostPath.path).toBe(agentSocketVolume.hostPath.path);
    expect(podSpecOf(wl).securityContext.runAsNonRoot).toBe(true);
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    const svidMount = c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === '/var/run/svid');
    expect(podSpecOf(wl).volumes.find((v: { name: string }) => v.name === svidMount.name).emptyDir).toBeDefined();
  });

  it('the README gives the apply order, the Istio-style entry and the cluster configuration', () => {
    const readme = readFileSync(join(DIR, 'README.md'), 'utf8');
    for (const file of readdirSync(DIR).filter((f) => f.endsWith('.yaml'))) expect(readme).toContain(file);
    expect(readme).toMatch(/cairn entry create --spiffe-id spiffe:\/\/example\.org\/ns\/\S+\/sa\/\S+/);
    expect(readme).toContain('--selector k8s:ns:');
    expect(readme).toContain('--selector k8s:sa:');
    expect(readme).toContain('cairn attestor k8s-psat add');
    expect(readme).toContain('--kubelet-ca-file');
  });
});

describe('the manifest validators catch mistakes', () => {
  const manifests = loadManifests();
  const daemonSet = () => structuredClone(get(manifests, 'DaemonSet', 'cairn-agent', 'cairn'));

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

  it('YAML 1.1 reads an unquoted yes as a boolean, as Kubernetes does', () => {
    const docs = parseAllDocuments('a: yes\nb: "yes"\n', { version: '1.1' });
    if (!Array.isArray(docs)) throw new Error('not a YAML stream');
    expect(docs[0]!.toJS()).toEqual({ a: true, b: 'yes' });
  });

  it('a volumeMount without its volume, a missing ConfigMap key and an undefined $(VAR) are broken references', () => {
    const broken = manifests.map((m) => ({ ...m, obj: structuredClone(m.obj) }));
    const ds = broken.find((m) => m.obj.kind === 'DaemonSet')!.obj;
    const c = ds.spec.template.spec.containers[0];
    c.volumeMounts.push({ name: 'nope', mountPath: '/nope' });
    c.env.find((e: { name: string }) => e.name === 'CAIRN_CLUSTER').valueFrom.configMapKeyRef.key = 'no-such-key';
    c.args.push('--cluster', '$(UNDEFINED_VAR)');
    ds.spec.template.spec.serviceAccountName = 'ghost';
    const problems = referenceProblems(broken);
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/volumeMount nope names no volume/),
      expect.stringMatching(/ConfigMap cairn\/cairn-agent has no key no-such-key/),
      expect.stringMatching(/\$\(UNDEFINED_VAR\) is not in its env/),
      expect.stringMatching(/ServiceAccount cairn\/ghost is not in the manifests/),
    ]));
  });

  it('an unknown CLI flag is reported', () => {
    expect(undocumentedFlags(['agent', 'start', '--socket', '/x', '--kubelet-insecure'])).toEqual(['--kubelet-insecure']);
  });
});

import { execFileSync } from 'node:child_process';
import { isAbsolute, join } from 'node:path';
import * as clientModels from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { CSIDriver } from 'kubernetes-models/storage.k8s.io/v1/CSIDriver';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parseAllDocuments } from 'yaml';
import { packageRoot } from '../../lib/paths.js';

/**
 * deploy/kubernetes as Kubernetes would receive it: rendered by `kubectl kustomize`, parsed as YAML
 * 1.1, checked against the Kubernetes schemas (kubernetes-models: types, required fields, formats;
 * @kubernetes/client-node's model graph: unknown fields) and for broken references between objects.
 */
export const DIR = join(packageRoot(), 'deploy', 'kubernetes');

/** A Kubernetes object as parsed; only the fields the invariants read are typed. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any };

/** `kubectl kustomize` must be Kustomize v5 (components, `labels`); scripts/test.sh installs kubectl. */
export function kustomizeVersion(): string {
  let out: string;
  try {
    out = execFileSync('kubectl', ['version', '--client', '--output=json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new Error(`kubectl is needed to render deploy/kubernetes (scripts/test.sh installs it from apt): ${(err as Error).message}`);
  }
  const version = (JSON.parse(out) as { kustomizeVersion?: string }).kustomizeVersion ?? '';
  if (!/^v[5-9]\./.test(version)) throw new Error(`kubectl's Kustomize is ${version || 'unknown'}; the package needs v5 (kubectl 1.27 or later)`);
  return version;
}

/** YAML 1.1 documents (as Kubernetes reads them: "yes" is a boolean there) to objects. */
export function parseStream(text: string, where: string): K8sObject[] {
  const docs = parseAllDocuments(text, { version: '1.1' });
  if (!Array.isArray(docs)) throw new Error(`${where}: not a YAML stream`);
  const out: K8sObject[] = [];
  for (const [i, doc] of docs.entries()) {
    if (doc.errors.length > 0) throw new Error(`${where} document ${i}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const obj = doc.toJS() as K8sObject | null;
    if (obj !== null) out.push(obj);
  }
  return out;
}

/** `kubectl kustomize deploy/kubernetes/<dir>` (or an absolute directory), parsed. */
export function render(dir: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', isAbsolute(dir) ? dir : join(DIR, dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 << 20 });
  return parseStream(text, `kubectl kustomize ${dir}`);
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
  'batch/v1/Job': Job,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'storage.k8s.io/v1/CSIDriver': CSIDriver,
  // the Prometheus Operator's CRDs, from @kubernetes-models/prometheus-operator (the CRDs' own schemas)
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

export function validateModel(obj: K8sObject): void {
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
export function unknownFields(value: unknown, type: string, path: string, out: string[] = []): string[] {
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

export function unknownFieldsOf(obj: K8sObject): string[] {
  // a CRD has no @kubernetes/client-node model; its kubernetes-models class checks it against the CRD's schema
  if (obj.apiVersion.startsWith('monitoring.coreos.com/')) return [];
  const type = `V1${obj.kind}`;
  if (!typeMaps[type]?.attributeTypeMap) return [`no @kubernetes/client-node model ${type}`];
  return unknownFields(obj, type, '');
}

/** Both validators; throws with every problem found. */
export function validate(obj: K8sObject): void {
  validateModel(obj);
  const unknown = unknownFieldsOf(obj);
  if (unknown.length > 0) throw new Error(`${obj.kind}/${obj.metadata?.name}: unknown fields ${unknown.join(', ')}`);
}

// ---- cross-object invariants ---------------------------------------------------------------------

export const WORKLOAD_KINDS = new Set(['Deployment', 'DaemonSet', 'StatefulSet', 'Job']);

export function find(objects: readonly K8sObject[], kind: string, name: string, namespace?: string): K8sObject | undefined {
  return objects.find((o) => o.kind === kind && o.metadata.name === name && (namespace === undefined || o.metadata.namespace === namespace));
}

export function get(objects: readonly K8sObject[], kind: string, name: string, namespace?: string): K8sObject {
  const obj = find(objects, kind, name, namespace);
  if (!obj) throw new Error(`no ${kind} ${namespace ? `${namespace}/` : ''}${name} in the rendered manifests`);
  return obj;
}

export const podSpecOf = (obj: K8sObject): any => obj.spec.template.spec;
export const containersOf = (obj: K8sObject): any[] => [...(podSpecOf(obj).initContainers ?? []), ...podSpecOf(obj).containers];

/** The value following `flag` in a container's args. */
export function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Broken references: volume mounts, ConfigMaps, Secrets (and their keys), service accounts, roles, namespaces. */
export function referenceProblems(objects: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  const has = (kind: string, name: string, namespace?: string) => find(objects, kind, name, namespace) !== undefined;
  const keysOf = (o: K8sObject) => new Set([...Object.keys(o.data ?? {}), ...Object.keys(o.stringData ?? {})]);
  const checkKey = (kind: 'ConfigMap' | 'Secret', name: string, key: string | undefined, ns: string, where: string) => {
    const target = find(objects, kind, name, ns);
    if (!target) problems.push(`${where}: ${kind} ${ns}/${name} is not in the manifests`);
    else if (key !== undefined && !keysOf(target).has(key)) problems.push(`${where}: ${kind} ${ns}/${name} has no key ${key}`);
  };
  for (const obj of objects) {
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
    // every namespace has a `default` service account, made by Kubernetes
    if (sa !== 'default' && !has('ServiceAccount', sa, namespace)) problems.push(`${where}: ServiceAccount ${namespace}/${sa} is not in the manifests`);
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
  for (const np of objects.filter((o) => o.kind === 'NetworkPolicy')) {
    const pods = objects.filter((o) => WORKLOAD_KINDS.has(o.kind) && o.metadata.namespace === np.metadata.namespace &&
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
  for (const svc of objects.filter((o) => o.kind === 'Service')) {
    const backends = objects.filter((o) => WORKLOAD_KINDS.has(o.kind) && o.metadata.namespace === svc.metadata.namespace &&
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


// ---- Pod Security Standards: the "restricted" profile ---------------------------------------------

const RESTRICTED_VOLUMES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);

/**
 * What the API server's PodSecurity admission at level "restricted" would refuse in a pod spec
 * (kubernetes.io/docs/concepts/security/pod-security-standards, baseline and restricted controls).
 */
export function restrictedViolations(pod: K8sObject): string[] {
  const out: string[] = [];
  for (const host of ['hostNetwork', 'hostPID', 'hostIPC'] as const) if (pod[host] === true) out.push(`${host}: true`);
  for (const v of pod.volumes ?? []) {
    const type = Object.keys(v).find((k) => k !== 'name');
    if (!type || !RESTRICTED_VOLUMES.has(type)) out.push(`volume ${v.name}: ${type ?? 'no source'} is not an allowed volume type`);
  }
  const podContext = pod.securityContext ?? {};
  const seccomp = (c: K8sObject | undefined) => c?.seccompProfile?.type as string | undefined;
  const containers = [...(pod.initContainers ?? []), ...(pod.containers ?? []), ...(pod.ephemeralContainers ?? [])];
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    const where = `container ${c.name}`;
    if (sc.privileged === true) out.push(`${where}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${where}: allowPrivilegeEscalation must be false`);
    if ((sc.runAsNonRoot ?? podContext.runAsNonRoot) !== true) out.push(`${where}: runAsNonRoot must be true`);
    if ((sc.runAsUser ?? podContext.runAsUser) === 0) out.push(`${where}: runAsUser 0`);
    const profile = seccomp(sc) ?? seccomp(podContext);
    if (profile !== 'RuntimeDefault' && profile !== 'Localhost') out.push(`${where}: seccompProfile must be RuntimeDefault or Localhost`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`${where}: capabilities must drop ALL`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') out.push(`${where}: adds capability ${cap}`);
    for (const p of c.ports ?? []) if (p.hostPort) out.push(`${where}: hostPort ${p.hostPort}`);
    if (sc.procMount && sc.procMount !== 'Default') out.push(`${where}: procMount ${sc.procMount}`);
  }
  if (seccomp(podContext) === 'Unconfined') out.push('pod seccompProfile Unconfined');
  return out;
}

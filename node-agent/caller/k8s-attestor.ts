import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import type { PeerInfo } from '../../workload-api/ports.js';

/**
 * The Kubernetes workload attestor, after SPIRE's `k8s` plugin: the kernel's cgroup path names the
 * caller's pod and container; the kubelet on this node says what that pod is. Nothing the workload
 * says about itself is trusted, so a process can only claim the pod the kernel placed it in.
 */

/**
 * A pod UID as the kubelet writes it into cgroup names: dashed (cgroupfs driver), underscored
 * (systemd driver, where '-' separates slice levels), or 32 bare hex digits (static pods, whose
 * UID is a config hash). One separator throughout, so a mixed string is not mistaken for a UID.
 */
const POD_UID = '[0-9a-f]{8}([-_]?)[0-9a-f]{4}\\2[0-9a-f]{4}\\2[0-9a-f]{4}\\2[0-9a-f]{12}';

/**
 * The pod directory or slice, then exactly one more path element, which must be the container:
 * anything deeper is some cgroup the container made for itself, not the container. ':' after the
 * slice covers containerd's systemd-driver form on cgroup v1 (`…pod<uid>.slice:cri-containerd:<id>`).
 */
const POD_THEN_CONTAINER = new RegExp(`(?:^|[/-])pod(${POD_UID})(?:\\.slice)?[/:]([^/]+)$`);

/**
 * Runtime prefixes are listed rather than skipped generically: CRI-O's monitor lives in the pod's
 * slice as `crio-conmon-<id>.scope` with the container's own ID, and must not pass for it.
 */
const CONTAINER = /^(?:(?:cri-containerd|crio|docker)[-:])?([0-9a-f]{64})(?:\.scope)?$/;

export interface PodAndContainer {
  readonly podUid: string;
  readonly containerId: string;
}

function parseLine(line: string): PodAndContainer | undefined {
  // hierarchy-ID:controllers:path; the path itself may hold ':'
  const first = line.indexOf(':');
  const second = first < 0 ? -1 : line.indexOf(':', first + 1);
  if (second < 0) return undefined;
  const m = POD_THEN_CONTAINER.exec(line.slice(second + 1).trim());
  if (!m) return undefined;
  const container = CONTAINER.exec(m[3]!);
  if (!container) return undefined;
  return { podUid: m[1]!.replaceAll('_', '-'), containerId: container[1]! };
}

/**
 * Pod UID and container ID from the text of /proc/<pid>/cgroup (v1, v2 or hybrid), or undefined
 * when the process is not in a Kubernetes container. Lines that disagree (v1 controllers placing
 * the process in two containers) also give undefined: attesting either would be a guess.
 */
export function parsePodFromCgroup(text: string): { podUid: string; containerId: string } | undefined {
  let found: PodAndContainer | undefined;
  for (const line of text.split('\n')) {
    const p = parseLine(line);
    if (!p) continue;
    if (found && (found.podUid !== p.podUid || found.containerId !== p.containerId)) return undefined;
    found = p;
  }
  return found && { podUid: found.podUid, containerId: found.containerId };
}

export interface K8sContainer {
  readonly name: string;
  readonly image?: string;
}

export interface K8sContainerStatus {
  readonly name: string;
  readonly image?: string;
  readonly imageID?: string;
  /** `<runtime>://<id>`; absent until the runtime has created the container. */
  readonly containerID?: string;
}

export interface K8sPod {
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly uid: string;
    readonly labels?: Readonly<Record<string, string>>;
  };
  readonly spec?: {
    readonly serviceAccountName?: string;
    readonly nodeName?: string;
    readonly containers?: readonly K8sContainer[];
    readonly initContainers?: readonly K8sContainer[];
    readonly ephemeralContainers?: readonly K8sContainer[];
  };
  readonly status?: {
    readonly containerStatuses?: readonly K8sContainerStatus[];
    readonly initContainerStatuses?: readonly K8sContainerStatus[];
    readonly ephemeralContainerStatuses?: readonly K8sContainerStatus[];
  };
}

export interface PodList {
  readonly kind?: string;
  readonly items: readonly K8sPod[];
}

/** Where the attestor gets pods from: the kubelet, or a fake in tests. */
export interface PodSource {
  /** `fresh` skips any cache: the caller has looked already and not found what it needs. */
  pods(options?: { fresh?: boolean }): Promise<PodList>;
}

export class KubeletError extends Error {
  override readonly name = 'KubeletError';
  constructor(
    message: string,
    /** HTTP status, when the kubelet answered at all. */
    readonly status: number | undefined,
    /** Worth asking again: the kubelet was unreachable, slow or failing, not refusing us. */
    readonly transient: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface KubeletClientOptions {
  /** e.g. https://127.0.0.1:10250 (the kubelet's authenticated port). */
  url: string;
  /** Bearer token, read on every fetch: projected service-account tokens are rotated in place. */
  tokenFile?: string;
  /** PEM bundle that signs the kubelet's serving certificate. */
  caFile?: string;
  skipVerify?: boolean;
  clock: Clock;
  /** How long one pod list answers lookups; default 1000. */
  cacheMs?: number;
  /** Whole-request limit; default 5000. */
  timeoutMs?: number;
}

/** A node runs at most a few hundred pods; anything past this is not a pod list. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

function isPodList(v: unknown): v is PodList {
  if (typeof v !== 'object' || v === null) return false;
  const items = (v as { items?: unknown }).items;
  // the kubelet sends `items: null` for a node without pods
  if (items === null || items === undefined) return true;
  return Array.isArray(items) && items.every((p) => typeof p === 'object' && p !== null && typeof (p as { metadata?: unknown }).metadata === 'object');
}

/**
 * GET /pods from the kubelet. Every caller in a burst of new connections would otherwise cost the
 * kubelet a full pod list, so one list serves lookups for `cacheMs` and concurrent fetches share a
 * request.
 */
export class KubeletClient implements PodSource {
  private readonly url: URL;
  private readonly agent: HttpsAgent;
  private readonly cacheMs: number;
  private readonly timeoutMs: number;
  private cached: { list: PodList; at: number } | undefined;
  private inflight: Promise<PodList> | undefined;

  constructor(private readonly options: KubeletClientOptions) {
    this.url = new URL('pods', options.url.endsWith('/') ? options.url : `${options.url}/`);
    // the bearer token authorises reading every pod on the node; never send it in clear
    if (this.url.protocol !== 'https:') throw new TypeError(`the kubelet URL must be https: ${options.url}`);
    this.cacheMs = options.cacheMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.agent = new HttpsAgent({
      keepAlive: true,
      maxSockets: 2,
      rejectUnauthorized: options.skipVerify !== true,
      ...(options.caFile && options.skipVerify !== true ? { ca: readFileSync(options.caFile, 'utf8') } : {}),
    });
  }

  async pods(options: { fresh?: boolean } = {}): Promise<PodList> {
    const now = this.options.clock.now().getTime();
    // a clock stepped backwards must not pin an old list in place
    if (!options.fresh && this.cached && now >= this.cached.at && now - this.cached.at < this.cacheMs) return this.cached.list;
    if (!this.inflight) {
      this.inflight = this.fetch().finally(() => {
        this.inflight = undefined;
      });
    }
    return this.inflight;
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  private async fetch(): Promise<PodList> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.options.tokenFile) {
      let token: string;
      try {
        token = (await readFile(this.options.tokenFile, 'utf8')).trim();
      } catch (err) {
        throw new KubeletError(`cannot read the kubelet token file ${this.options.tokenFile}: ${(err as Error).message}`, undefined, false, { cause: err });
      }
      headers.authorization = `Bearer ${token}`;
    }
    const list = await this.get(headers);
    this.cached = { list, at: this.options.clock.now().getTime() };
    return list;
  }

  private get(headers: Record<string, string>): Promise<PodList> {
    const where = `the kubelet at ${this.url.origin}`;
    return new Promise<PodList>((resolve, reject) => {
      let settled = false;
      const done = (err: Error | undefined, list?: PodList): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(list!);
      };
      const req = httpsRequest(this.url, { method: 'GET', agent: this.agent, headers }, (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          res.resume();
          const refused = status === 401 || status === 403;
          const hint = refused ? ' (check the token and its RBAC: get on nodes/pods, or on nodes/proxy where the kubelet lacks fine-grained authorization)' : '';
          done(new KubeletError(`${where} answered ${status} to GET /pods${hint}`, status, !refused && (status >= 500 || status === 429)));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY_BYTES) {
            req.destroy();
            done(new KubeletError(`${where} sent a pod list over ${MAX_BODY_BYTES} bytes`, status, false));
            return;
          }
          chunks.push(c);
        });
        res.on('error', (err) => done(new KubeletError(`${where} broke off the pod list: ${err.message}`, status, true, { cause: err })));
        res.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch (err) {
            done(new KubeletError(`${where} sent a pod list that is not JSON`, status, false, { cause: err }));
            return;
          }
          if (!isPodList(body)) {
            done(new KubeletError(`${where} sent something other than a PodList`, status, false));
            return;
          }
          done(undefined, { ...body, items: body.items ?? [] });
        });
      });
      const timer = setTimeout(() => {
        done(new KubeletError(`${where} did not answer GET /pods within ${this.timeoutMs} ms`, undefined, true));
        req.destroy();
      }, this.timeoutMs);
      req.on('error', (err) => done(new KubeletError(`cannot reach ${where}: ${err.message}`, undefined, true, { cause: err })));
      req.end();
    });
  }
}

export interface K8sAttestorOptions {
  readonly pods: PodSource;
  readonly procRoot?: string;
  /** Pod-list lookups per caller before giving up; default 10. */
  readonly maxAttempts?: number;
  /** First wait between lookups, doubled each time; default 50 ms. */
  readonly retryDelayMs?: number;
  /** Longest wait between lookups; default 900 ms (with the defaults, about 5 s in all). */
  readonly maxRetryDelayMs?: number;
  readonly log?: Logger;
}

function runtimeIdOf(containerID: string | undefined): string | undefined {
  if (!containerID) return undefined;
  const i = containerID.indexOf('://');
  return i < 0 ? containerID : containerID.slice(i + 3);
}

type Found = { pod: K8sPod; status: K8sContainerStatus; spec: K8sContainer | undefined };

function find(list: PodList, target: PodAndContainer): Found | undefined {
  const pod = list.items.find((p) => p.metadata?.uid === target.podUid);
  if (!pod) return undefined;
  const kinds = [
    [pod.status?.containerStatuses, pod.spec?.containers],
    [pod.status?.initContainerStatuses, pod.spec?.initContainers],
    [pod.status?.ephemeralContainerStatuses, pod.spec?.ephemeralContainers],
  ] as const;
  for (const [statuses, specs] of kinds) {
    const status = statuses?.find((s) => runtimeIdOf(s.containerID) === target.containerId);
    if (status) return { pod, status, spec: specs?.find((c) => c.name === status.name) };
  }
  return undefined;
}

function selectorsOf({ pod, status, spec }: Found): string[] {
  const out: string[] = [];
  const add = (kind: string, value: string | undefined): void => {
    if (value) out.push(`k8s:${kind}:${value}`);
  };
  add('ns', pod.metadata.namespace);
  add('sa', pod.spec?.serviceAccountName);
  add('pod-name', pod.metadata.name);
  add('pod-uid', pod.metadata.uid);
  for (const [k, v] of Object.entries(pod.metadata.labels ?? {})) out.push(`k8s:pod-label:${k}:${v}`);
  add('container-name', status.name);
  // as SPIRE: the name the runtime resolved, the digest it pulled, and the name the pod asked for
  add('container-image', status.image);
  add('container-image', status.imageID);
  add('container-image', spec?.image);
  add('node-name', pod.spec?.nodeName);
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class K8sWorkloadAttestor {
  private readonly procRoot: string;
  private readonly maxAttempts: number;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;

  constructor(private readonly options: K8sAttestorOptions) {
    this.procRoot = options.procRoot ?? '/proc';
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 10);
    this.retryDelayMs = options.retryDelayMs ?? 50;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 900;
  }

  /**
   * Sorted k8s selectors for the caller; [] when it is not in a Kubernetes container or its
   * container never shows up. Throws when the kubelet cannot be asked, so the caller is told to
   * come back rather than silently given no identity.
   */
  async selectors(peer: PeerInfo): Promise<string[]> {
    let cgroup: string;
    try {
      cgroup = await readFile(`${this.procRoot}/${peer.pid}/cgroup`, 'utf8');
    } catch {
      // the process is gone, or this is not Linux: nothing to attest
      return [];
    }
    const target = parsePodFromCgroup(cgroup);
    if (!target) return [];
    return this.selectorsFor(target, peer.pid);
  }

  /** k8s selectors for the pod and container the caller's cgroup named (read when it connected). */
  async selectorsFor(target: PodAndContainer, pid: number): Promise<string[]> {
    const peer = { pid };
    let delay = this.retryDelayMs;
    let lastError: KubeletError | Error | undefined;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      if (attempt > 1) {
        await sleep(delay);
        delay = Math.min(delay * 2, this.maxRetryDelayMs);
      }
      let list: PodList;
      try {
        list = await this.options.pods.pods({ fresh: attempt > 1 });
      } catch (err) {
        lastError = err as Error;
        if (err instanceof KubeletError && !err.transient) break;
        continue;
      }
      lastError = undefined;
      const found = find(list, target);
      if (found) return [...new Set(selectorsOf(found))].sort();
      // a container the runtime just started reaches the kubelet's list a moment later
      this.options.log?.debug({ pid: peer.pid, podUid: target.podUid, containerId: target.containerId, attempt }, 'k8s attestor: container not in the kubelet pod list yet');
    }
    if (lastError) throw new Error(`k8s attestation failed: cannot list pods from the kubelet: ${lastError.message}`, { cause: lastError });
    this.options.log?.warn({ pid: peer.pid, podUid: target.podUid, containerId: target.containerId }, 'k8s attestor: container not found in the kubelet pod list');
    return [];
  }
}

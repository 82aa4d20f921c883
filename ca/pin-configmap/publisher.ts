import type { Logger } from '../../lib/log.js';
import { sleepUnlessAborted } from '../../lib/sleep.js';
import { requestJson } from '../../lib/tls-client.js';
import { readCredentialSet, type KubeCredentialSet } from '../node-attestation/kube-credentials.js';

/**
 * Where the CA publishes its TLS URL and pin for node agents: a ConfigMap the agents' DaemonSet reads
 * (`ca start --pin-configmap NAMESPACE/NAME`), so nobody pastes a pin by hand. SPIRE's k8sbundle
 * notifier does the same for the trust bundle.
 */
export interface PinConfigMapTarget {
  readonly namespace: string;
  readonly name: string;
  /** The credential set (--kube-credentials, or the built-in in-cluster one) that may write it. */
  readonly credentials: KubeCredentialSet;
}

/** What the ConfigMap holds: the keys the agent DaemonSet maps to --ca-url and --ca-pin. */
export interface PinDocument {
  readonly 'ca-url': string;
  readonly 'ca-pin': string;
}

export type PublishOutcome = 'created' | 'updated' | 'unchanged';

const TIMEOUT_MS = 10_000;
const MAX_BYTES = 1 << 20;
/** Drift (an edit, a deleted ConfigMap) is repaired this often. */
export const REPUBLISH_MS = 5 * 60_000;
const FIRST_RETRY_MS = 5_000;

interface ConfigMapObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string>; [k: string]: unknown };
  data?: Record<string, string>;
  [k: string]: unknown;
}

export class PublishError extends Error {
  override readonly name = 'PublishError';
}

const LABELS = { 'app.kubernetes.io/managed-by': 'cairn-ca', 'app.kubernetes.io/part-of': 'cairn' };

/**
 * Keeps the ConfigMap equal to what the CA serves: created when missing, replaced (other labels,
 * annotations and keys kept) when it differs. Replicas race harmlessly: a 409 is another replica's
 * write of the same values, and the next pass compares again.
 */
export class PinConfigMapPublisher {
  constructor(
    private readonly deps: {
      readonly target: PinConfigMapTarget;
      readonly document: () => Promise<PinDocument>;
      readonly logger: Logger;
      readonly republishMs?: number;
      readonly firstRetryMs?: number;
    },
  ) {}

  private get path(): string {
    const { namespace, name } = this.deps.target;
    return `/api/v1/namespaces/${namespace}/configmaps/${name}`;
  }

  private async call(method: 'GET' | 'POST' | 'PUT', path: string, body: unknown): Promise<{ status: number; body: ConfigMapObject }> {
    const { apiServer, bearer, ca } = readCredentialSet(this.deps.target.credentials);
    try {
      return await requestJson<ConfigMapObject>(method, apiServer.replace(/\/+$/, '') + path, body, { ca, bearer, checkServerName: true, timeoutMs: TIMEOUT_MS, maxBytes: MAX_BYTES });
    } catch (err) {
      throw new PublishError(`the Kubernetes API at ${apiServer} did not answer ${method} ${path}: ${(err as Error).message}`);
    }
  }

  private refused(method: string, path: string, status: number): PublishError {
    const hint = status === 401 || status === 403 ? ` (the credential set "${this.deps.target.credentials.name}" needs get, create and update on this ConfigMap)` : '';
    return new PublishError(`the Kubernetes API answered ${method} ${path} with HTTP ${status}${hint}`);
  }

  /** One comparison and, where needed, one write. */
  async publish(): Promise<PublishOutcome> {
    const doc = await this.deps.document();
    const { namespace, name } = this.deps.target;
    const current = await this.call('GET', this.path, undefined);
    if (current.status === 404) {
      const created = await this.call('POST', `/api/v1/namespaces/${namespace}/configmaps`, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels: LABELS }, data: { ...doc } });
      if (created.status === 201 || created.status === 200) return 'created';
      if (created.status === 409) return 'unchanged'; // another replica created it first
      throw this.refused('POST', `/api/v1/namespaces/${namespace}/configmaps`, created.status);
    }
    if (current.status !== 200) throw this.refused('GET', this.path, current.status);
    const existing = current.body;
    const data = existing.data ?? {};
    if (Object.entries(doc).every(([k, v]) => data[k] === v)) return 'unchanged';
    const replaced: ConfigMapObject = {
      ...existing,
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { ...existing.metadata, labels: { ...existing.metadata?.labels, ...LABELS } },
      data: { ...data, ...doc },
    };
    const put = await this.call('PUT', this.path, replaced);
    if (put.status === 200) return 'updated';
    if (put.status === 409) return 'unchanged'; // changed meanwhile; compared again on the next pass
    throw this.refused('PUT', this.path, put.status);
  }

  /** Publishes now, then every REPUBLISH_MS; after a failure, again sooner (doubling up to that period). */
  async run(signal: AbortSignal): Promise<void> {
    const every = this.deps.republishMs ?? REPUBLISH_MS;
    let retry = this.deps.firstRetryMs ?? FIRST_RETRY_MS;
    const { namespace, name } = this.deps.target;
    while (!signal.aborted) {
      let wait = every;
      try {
        const outcome = await this.publish();
        retry = this.deps.firstRetryMs ?? FIRST_RETRY_MS;
        if (outcome !== 'unchanged') this.deps.logger.info({ event: 'pin_configmap.published', namespace, name, outcome }, `the CA's TLS URL and pin ${outcome === 'created' ? 'were published to' : 'were updated in'} ConfigMap ${namespace}/${name}`);
      } catch (err) {
        const message = err instanceof PublishError ? err.message : (err as Error).message;
        this.deps.logger.error({ event: 'pin_configmap.failed', namespace, name, retryInMs: retry }, `could not publish the CA's pin to ConfigMap ${namespace}/${name}: ${message}`);
        wait = Math.min(retry, every);
        retry = Math.min(retry * 2, every);
      }
      await sleepUnlessAborted(wait, signal);
    }
  }
}

import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgent } from '../../node-agent/main.js';
import type { NodeAttestation } from '../../node-agent/attestation/node-attestors.js';
import { parseDuration } from '../../lib/duration.js';
import { UsageError, type Parsed, type Values } from '../flags.js';
import type { AGENT_START_FLAGS, AGENT_UNREGISTERED_FLAGS } from '../specs/agent.js';
import { dataDirOf, readInputFile } from '../client.js';
import { leanProcessLogger } from '../logging.js';
import { listenAddress } from '../settings.js';
import { banner, printResult, table } from '../output.js';

/** Resolves when SIGINT or SIGTERM arrives. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const done = (sig: string) => () => resolve(sig);
    process.once('SIGINT', done('SIGINT'));
    process.once('SIGTERM', done('SIGTERM'));
  });
}

/**
 * SIGINT and SIGTERM for a command that starts a server (`ca start`, `up`, `agent start`), listened
 * for BEFORE anything starts: a signal arriving between the start and a later listener (a supervisor
 * or test that signals as soon as it reads the ready line) would otherwise be Node's default death,
 * without closing the socket or the store. One during the start (say, while the CA is unreachable
 * and attestation retries) ends the process at once; call `started()` once the server is up (before
 * printing its ready line), and `stopped` resolves with the signal for a graceful close.
 */
export function stopSignals(): { readonly stopped: Promise<string>; started(): void } {
  let starting = true;
  const stopped = untilSignal();
  void stopped.then(() => {
    if (starting) process.exit(0);
  });
  return {
    stopped,
    started: () => {
      starting = false;
    },
  };
}

/**
 * The join token, from the flag, a file or CAIRN_JOIN_TOKEN. The agent compares it with the token its
 * data dir attested with: the same one is not spent again, so the file may stay configured, and it
 * may also be deleted after the first start (a missing file is no token).
 */
export function joinTokenOf(flag: string | undefined, file: string | undefined): string | (() => Promise<string | undefined>) | undefined {
  if (flag) return flag;
  if (file) {
    return async () => (existsSync(file) ? readInputFile(file, 'the join token file').trim() : undefined);
  }
  return process.env.CAIRN_JOIN_TOKEN;
}

type AgentValues = Values<typeof AGENT_START_FLAGS>;

/** Where Kubernetes mounts a pod's service-account token and the cluster CA (ca.crt). */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** --workload-attestor: unix always runs; k8s and systemd are added by name (the table checks the names). */
const workloadAttestorsOf = (values: AgentValues): string[] => values['workload-attestor'] ?? [];

/** --workload-idle-timeout D (0 turns the idle close off) and --workload-max-connections-per-uid N, checked by the table. */
function workloadLimitsOf(values: AgentValues): { workloadIdleTimeoutMs?: number; workloadMaxConnectionsPerUid?: number } {
  const out: { workloadIdleTimeoutMs?: number; workloadMaxConnectionsPerUid?: number } = {};
  const idle = values['workload-idle-timeout'];
  if (idle !== undefined) out.workloadIdleTimeoutMs = parseDuration(idle) * 1000;
  const max = values['workload-max-connections-per-uid'];
  if (max !== undefined) out.workloadMaxConnectionsPerUid = Number(max);
  return out;
}

/** `--workload-attestor k8s` adds the kubelet's view of the caller's pod. */
function kubeletOf(values: AgentValues) {
  if (!workloadAttestorsOf(values).includes('k8s')) return undefined;
  const url = values['kubelet-url'];
  if (!url) throw new UsageError('--workload-attestor k8s needs --kubelet-url https://<node-ip>:10250', 'agent start');
  if (values['kubelet-ca-file'] && values['kubelet-skip-verify']) throw new UsageError('--kubelet-ca-file and --kubelet-skip-verify are alternatives: give one', 'agent start');
  const tokenFile = values['kubelet-token-file'];
  if (values['kubelet-skip-verify']) return { url, tokenFile, caFile: undefined, skipVerify: true };
  // Verified by default: kubelet serving certificates signed by the cluster CA (serverTLSBootstrap)
  // verify against the service account's ca.crt; other setups name their CA with --kubelet-ca-file.
  const caFile = values['kubelet-ca-file'] ?? `${SERVICE_ACCOUNT_DIR}/ca.crt`;
  try {
    accessSync(caFile, constants.R_OK);
  } catch (err) {
    const flag = values['kubelet-ca-file'] ? '--kubelet-ca-file' : 'the default --kubelet-ca-file (the cluster CA)';
    throw new UsageError(`cannot read ${flag} ${caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; name the CA that signs the kubelet's serving certificate with --kubelet-ca-file F (or, knowingly, --kubelet-skip-verify)`, 'agent start');
  }
  return { url, tokenFile, caFile, skipVerify: false };
}

/** --attestor k8s_psat | x509pop and what each needs; join_token (the default) needs none of it. */
function nodeAttestationOf(values: AgentValues): NodeAttestation | undefined {
  const kind = values.attestor;
  if (kind === 'join_token') return undefined;
  const need = (name: 'ca-url' | 'ca-pin' | 'trust-domain' | 'cluster' | 'x509pop-cert' | 'x509pop-key'): string => {
    const value = values[name];
    if (!value) throw new UsageError(`--attestor ${kind} needs --${name}`, 'agent start');
    return value;
  };
  const ca = { caUrl: need('ca-url'), caPin: need('ca-pin'), trustDomain: need('trust-domain') };
  if (kind === 'k8s_psat') return { kind, ...ca, cluster: need('cluster'), tokenFile: values['psat-token-file'] };
  if (kind === 'x509pop') return { kind, ...ca, certFile: need('x509pop-cert'), keyFile: need('x509pop-key') };
  throw new UsageError(`--attestor must be join_token, k8s_psat or x509pop, got "${kind}"`, 'agent start');
}

export async function agentStartCommand({ values }: Parsed<typeof AGENT_START_FLAGS>): Promise<void> {
  const dataRoot = dataDirOf(values['data-dir']);
  // Every setting checked before the restart in place (leanProcessLogger) and before anything starts.
  const joinToken = joinTokenOf(values['join-token'], values['join-token-file']);
  const attestation = nodeAttestationOf(values);
  const kubelet = kubeletOf(values);
  const systemd = workloadAttestorsOf(values).includes('systemd');
  const limits = workloadLimitsOf(values);
  const logger = leanProcessLogger(values);
  const signals = stopSignals();
  const metricsListen = values['metrics-listen'] === undefined ? undefined : listenAddress(values['metrics-listen'], '--metrics-listen');
  const handle = await startAgent({ dataDir: join(dataRoot, 'agent'), ownedDir: dataRoot, socketPath: values.socket, joinToken, attestation, kubelet, systemd, ...limits, metricsListen, processMetrics: true }, { logger });
  signals.started();
  banner([`Cairn ${handle.version} agent ${handle.spiffeId} serving the Workload API; export SPIFFE_ENDPOINT_SOCKET=unix://${handle.socketPath}${handle.metricsUrl ? `; metrics at ${handle.metricsUrl}` : ''}`]);
  // Until a signal, or until the agent stops by itself (the CA refuses it and it cannot attest
  // again): then exit non-zero with what to do, so a supervisor notices.
  const stopped = await Promise.race([signals.stopped.then(() => undefined), handle.done.then(() => undefined, (err: unknown) => err)]);
  await handle.close();
  if (stopped) throw stopped;
}

export async function agentUnregisteredCommand({ values }: Parsed<typeof AGENT_UNREGISTERED_FLAGS>): Promise<void> {
  const file = join(dataDirOf(values['data-dir']), 'agent', 'unregistered.json');
  const list = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { selectors: string[]; count: number; lastSeen: string; reason?: string }[]) : [];
  // the reason column appears only when a template refused someone (a selector value it cannot use)
  const reasons = list.some((c) => c.reason);
  printResult(values.json, list, () =>
    table([['SELECTORS', 'CALLS', 'LAST SEEN', ...(reasons ? ['REASON'] : [])], ...list.map((c) => [c.selectors.join(' '), String(c.count), c.lastSeen, ...(reasons ? [c.reason ?? '-'] : [])])]));
}

import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgent } from '../../node-agent/main.js';
import type { NodeAttestation } from '../../node-agent/attestation/node-attestors.js';
import { parse, UsageError } from '../args.js';
import { parseDuration } from '../../lib/duration.js';
import { dataDirOf, readInputFile } from '../client.js';
import { LOG_OPTIONS, leanProcessLogger } from '../logging.js';
import { banner, printResult, table } from '../output.js';

export const AGENT_USAGE = `cairn agent start [--data-dir DIR] [--socket PATH] [--join-token T | --join-token-file F] [--log-level L] [--log-format pretty|json]
cairn agent healthcheck [--socket PATH] [--wait DURATION]   (exit 0 when synced and holding a valid agent SVID)
cairn agent start --attestor k8s_psat --trust-domain TD --cluster NAME --ca-url URL --ca-pin PIN [--psat-token-file F]
cairn agent start --attestor x509pop --trust-domain TD --ca-url URL --ca-pin PIN --x509pop-cert PEM --x509pop-key PEM
                  [--workload-attestor k8s --kubelet-url https://NODE_IP:10250 [--kubelet-token-file F] [--kubelet-ca-file F | --kubelet-skip-verify]]
                  [--workload-attestor systemd] [--workload-idle-timeout 30s] [--workload-max-connections-per-uid 64]
cairn agent unregistered [--data-dir DIR]     (callers that matched no entry: discovery mode)`;

/** Resolves when SIGINT or SIGTERM arrives. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const done = (sig: string) => () => resolve(sig);
    process.once('SIGINT', done('SIGINT'));
    process.once('SIGTERM', done('SIGTERM'));
  });
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

const AGENT_START_OPTIONS = {
  socket: { type: 'string' },
  'join-token': { type: 'string' },
  'join-token-file': { type: 'string' },
  attestor: { type: 'string' },
  'trust-domain': { type: 'string' },
  cluster: { type: 'string' },
  'ca-url': { type: 'string' },
  'ca-pin': { type: 'string' },
  'psat-token-file': { type: 'string' },
  'x509pop-cert': { type: 'string' },
  'x509pop-key': { type: 'string' },
  'workload-attestor': { type: 'string', multiple: true },
  'kubelet-url': { type: 'string' },
  'kubelet-token-file': { type: 'string' },
  'kubelet-ca-file': { type: 'string' },
  'kubelet-skip-verify': { type: 'boolean', default: false },
  'workload-idle-timeout': { type: 'string' },
  'workload-max-connections-per-uid': { type: 'string' },
} as const;

/** Where Kubernetes mounts a pod's service-account token and the cluster CA (ca.crt). */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** --workload-attestor: unix always runs; k8s and systemd are added by name. */
function workloadAttestorsOf(values: { 'workload-attestor'?: string[] | undefined }): string[] {
  const attestors = values['workload-attestor'] ?? [];
  for (const a of attestors) if (a !== 'unix' && a !== 'k8s' && a !== 'systemd') throw new UsageError(`--workload-attestor must be unix, k8s or systemd, got "${a}"`);
  return attestors;
}

/** --workload-idle-timeout D (0 turns the idle close off) and --workload-max-connections-per-uid N. */
function workloadLimitsOf(values: { 'workload-idle-timeout'?: string | undefined; 'workload-max-connections-per-uid'?: string | undefined }): { workloadIdleTimeoutMs?: number; workloadMaxConnectionsPerUid?: number } {
  const out: { workloadIdleTimeoutMs?: number; workloadMaxConnectionsPerUid?: number } = {};
  const idle = values['workload-idle-timeout'];
  if (idle !== undefined) {
    try {
      out.workloadIdleTimeoutMs = parseDuration(idle) * 1000;
    } catch {
      throw new UsageError(`--workload-idle-timeout must be a duration like 30s, 5m or 0 (never), got "${idle}"`);
    }
  }
  const max = values['workload-max-connections-per-uid'];
  if (max !== undefined) {
    if (!/^[1-9]\d{0,6}$/.test(max)) throw new UsageError(`--workload-max-connections-per-uid must be a whole number from 1 to 9999999, got "${max}"`);
    out.workloadMaxConnectionsPerUid = Number(max);
  }
  return out;
}

/** `--workload-attestor k8s` adds the kubelet's view of the caller's pod. */
function kubeletOf(values: { 'workload-attestor'?: string[] | undefined; 'kubelet-url'?: string | undefined; 'kubelet-token-file'?: string | undefined; 'kubelet-ca-file'?: string | undefined; 'kubelet-skip-verify'?: boolean | undefined }) {
  if (!workloadAttestorsOf(values).includes('k8s')) return undefined;
  const url = values['kubelet-url'] ?? process.env.CAIRN_KUBELET_URL;
  if (!url) throw new UsageError('--workload-attestor k8s needs --kubelet-url https://<node-ip>:10250');
  if (values['kubelet-ca-file'] && values['kubelet-skip-verify']) throw new UsageError('--kubelet-ca-file and --kubelet-skip-verify are alternatives: give one');
  const tokenFile = values['kubelet-token-file'] ?? `${SERVICE_ACCOUNT_DIR}/token`;
  if (values['kubelet-skip-verify']) return { url, tokenFile, caFile: undefined, skipVerify: true };
  // Verified by default: kubelet serving certificates signed by the cluster CA (serverTLSBootstrap)
  // verify against the service account's ca.crt; other setups name their CA with --kubelet-ca-file.
  const caFile = values['kubelet-ca-file'] ?? `${SERVICE_ACCOUNT_DIR}/ca.crt`;
  try {
    accessSync(caFile, constants.R_OK);
  } catch (err) {
    const flag = values['kubelet-ca-file'] ? '--kubelet-ca-file' : 'the default --kubelet-ca-file (the cluster CA)';
    throw new UsageError(`cannot read ${flag} ${caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; name the CA that signs the kubelet's serving certificate with --kubelet-ca-file F (or, knowingly, --kubelet-skip-verify)`);
  }
  return { url, tokenFile, caFile, skipVerify: false };
}

/** --attestor k8s_psat | x509pop and what each needs; join_token (the default) needs none of it. */
function nodeAttestationOf(values: Partial<Record<'attestor' | 'trust-domain' | 'cluster' | 'ca-url' | 'ca-pin' | 'psat-token-file' | 'x509pop-cert' | 'x509pop-key', string | undefined>>): NodeAttestation | undefined {
  const kind = values.attestor ?? process.env.CAIRN_ATTESTOR ?? 'join_token';
  if (kind === 'join_token') return undefined;
  const need = (name: string, value: string | undefined): string => {
    if (!value) throw new UsageError(`--attestor ${kind} needs --${name}`);
    return value;
  };
  const ca = {
    caUrl: need('ca-url', values['ca-url'] ?? process.env.CAIRN_CA_URL),
    caPin: need('ca-pin', values['ca-pin'] ?? process.env.CAIRN_CA_PIN),
    trustDomain: need('trust-domain', values['trust-domain'] ?? process.env.CAIRN_TRUST_DOMAIN),
  };
  if (kind === 'k8s_psat') {
    return { kind, ...ca, cluster: need('cluster', values.cluster ?? process.env.CAIRN_CLUSTER), tokenFile: values['psat-token-file'] ?? DEFAULT_PSAT_TOKEN_FILE };
  }
  if (kind === 'x509pop') {
    return { kind, ...ca, certFile: need('x509pop-cert', values['x509pop-cert']), keyFile: need('x509pop-key', values['x509pop-key']) };
  }
  throw new UsageError(`--attestor must be join_token, k8s_psat or x509pop, got "${kind}"`);
}

/** Where the DaemonSet in deploy/kubernetes projects the agent's token (audience cairn-ca). */
export const DEFAULT_PSAT_TOKEN_FILE = '/var/run/secrets/tokens/cairn-agent';

export async function agentCommand(argv: string[]): Promise<void> {
  const [verb] = argv;
  if (verb === 'start') {
    const { values } = parse(argv.slice(1), { ...AGENT_START_OPTIONS, ...LOG_OPTIONS });
    const dataRoot = dataDirOf(values['data-dir']);
    // Every setting checked before the restart in place (leanProcessLogger) and before anything starts.
    const joinToken = joinTokenOf(values['join-token'], values['join-token-file']);
    const attestation = nodeAttestationOf(values);
    const kubelet = kubeletOf(values);
    const systemd = workloadAttestorsOf(values).includes('systemd');
    const limits = workloadLimitsOf(values);
    const logger = leanProcessLogger(values);
    // Listened for before anything starts: a SIGTERM arriving between the start and the listener
    // would otherwise kill the process outright, without closing the socket. One during the start
    // (say, while the CA is unreachable and attestation retries) stops the process at once.
    const signalled = untilSignal();
    let starting = true;
    void signalled.then(() => {
      if (starting) process.exit(0);
    });
    const handle = await startAgent(
      {
        dataDir: join(dataRoot, 'agent'),
        ownedDir: dataRoot,
        socketPath: values.socket ?? process.env.CAIRN_AGENT_SOCKET,
        joinToken,
        attestation,
        kubelet,
        systemd,
        ...limits,
      },
      { logger },
    );
    starting = false;
    banner([`Cairn ${handle.version} agent ${handle.spiffeId} serving the Workload API; export SPIFFE_ENDPOINT_SOCKET=unix://${handle.socketPath}`]);
    // Until a signal, or until the agent stops by itself (the CA refuses it and it cannot attest
    // again): then exit non-zero with what to do, so a supervisor notices.
    const stopped = await Promise.race([signalled.then(() => undefined), handle.done.then(() => undefined, (err: unknown) => err)]);
    await handle.close();
    if (stopped) throw stopped;
    return;
  }
  if (verb === 'unregistered') {
    const { values } = parse(argv.slice(1), {});
    const file = join(dataDirOf(values['data-dir']), 'agent', 'unregistered.json');
    const list = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { selectors: string[]; count: number; lastSeen: string }[]) : [];
    printResult(values.json, list, () => table([['SELECTORS', 'CALLS', 'LAST SEEN'], ...list.map((c) => [c.selectors.join(' '), String(c.count), c.lastSeen])]));
    return;
  }
  // Loaded on demand: the admin client's schemas (TypeBox) would cost `agent start` ~20 MB resident.
  if (verb === 'list' || verb === 'ban' || verb === 'unban' || verb === 'evict' || verb === 'bans') return (await import('./enrollment.js')).agentAdminCommand(argv);
  throw new UsageError(AGENT_USAGE);
}
